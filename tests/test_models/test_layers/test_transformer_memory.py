"""ClipTransformer's memory options change nothing in the results: encoder
activation checkpointing (``with_cp``) and dropping an all-False padding
mask (so that fused attention kernels run)."""
import copy

import torch
from mmdet.registry import MODELS

import mmttsrn  # noqa: F401
from mmttsrn.models.layers import FusedMultiheadAttention
from mmttsrn.models.layers.transformer import _drop_empty_mask

D, HEADS = 16, 4


def _transformer(**kwargs):
    model = MODELS.build(
        dict(
            type='ClipTransformer',
            embed_dims=D,
            num_heads=HEADS,
            num_encoder_layers=2,
            num_decoder_layers=2,
            feedforward_channels=32,
            dropout=0.1,
            **kwargs))
    model.init_weights()
    return model.train()


def _run(model, src, mask, pos, query_pos):
    """Outputs and parameter gradients of a fixed function of them."""
    torch.manual_seed(1)  # the same dropout masks in both runs
    src = src.clone().requires_grad_()
    hs, memory = model(src, mask, pos, query_pos)
    loss = (hs * torch.linspace(-1, 1, hs.numel()).view_as(hs)).sum() + \
        (memory * torch.linspace(1, -1, memory.numel()).view_as(memory)).sum()
    model.zero_grad()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return hs.detach(), memory.detach(), src.grad, grads


def _inputs(padded):
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(2, 12, D, generator=gen)
    pos = torch.randn(2, 12, D, generator=gen)
    query_pos = torch.randn(2, 6, D, generator=gen)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    if padded:
        mask[1, 9:] = True
    return src, mask, pos, query_pos


def test_with_cp_gives_the_same_outputs_and_gradients():
    plain = _transformer()
    checkpointed = copy.deepcopy(plain)
    checkpointed.encoder.with_cp = True
    assert _transformer(with_cp=True).encoder.with_cp
    assert not plain.encoder.with_cp
    for padded in (False, True):
        inputs = _inputs(padded)
        expected = _run(plain, *inputs)
        actual = _run(checkpointed, *inputs)
        for a, e in zip(actual[:3], expected[:3]):
            torch.testing.assert_close(a, e, rtol=0, atol=0)
        for name, grad in expected[3].items():
            torch.testing.assert_close(actual[3][name], grad, msg=name)


def test_all_false_padding_mask_is_dropped_with_the_same_result():
    model = _transformer().eval()
    src, mask, pos, query_pos = _inputs(padded=False)
    expected = _run(model, src, None, pos, query_pos)
    actual = _run(model, src, mask, pos, query_pos)
    for a, e in zip(actual[:3], expected[:3]):
        torch.testing.assert_close(a, e, rtol=0, atol=0)
    # The attention itself: an all-False mask and no mask agree, gradients
    # included (up to the rounding of another kernel).
    torch.manual_seed(0)
    attn = FusedMultiheadAttention(D, HEADS)
    q = torch.randn(2, 5, D, requires_grad=True)
    kv = torch.randn(2, 7, D, requires_grad=True)
    out_masked = attn(q, kv, kv, key_padding_mask=torch.zeros(2, 7).bool())
    grads_masked = torch.autograd.grad(out_masked.square().sum(),
                                       (q, kv, attn.in_proj_weight))
    out = attn(q, kv, kv)
    grads = torch.autograd.grad(out.square().sum(),
                                (q, kv, attn.in_proj_weight))
    torch.testing.assert_close(out, out_masked)
    for g, g_masked in zip(grads, grads_masked):
        torch.testing.assert_close(g, g_masked)


def test_a_real_padding_mask_is_kept():
    model = _transformer().eval()
    src, mask, pos, query_pos = _inputs(padded=True)
    with torch.no_grad():
        hs, _ = model(src, mask, pos, query_pos)
        hs_unmasked, _ = model(src, None, pos, query_pos)
    assert not torch.allclose(hs, hs_unmasked, atol=1e-4)


def test_an_exported_or_compiled_graph_keeps_the_mask(monkeypatch):
    """The mask may be all-False only for the example input of an export
    (tests/test_tools/test_pytorch2onnx.py exports through it)."""
    mask = torch.zeros(1, 4, dtype=torch.bool)
    assert _drop_empty_mask(mask) is None
    for name in ('is_exporting', 'is_compiling'):
        with monkeypatch.context() as patch:
            patch.setattr(torch.compiler, name, lambda: True)
            assert _drop_empty_mask(mask) is mask
