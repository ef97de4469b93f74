import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS

from mmttsrn.models.heads import SequenceMaskHead

D, HEADS, FPN = 48, 4, (16, 8, 4)
# Stride 32, 16, 8, 4 sizes of an odd-sized frame.
MEM_HW, FPN_HW = (2, 3), [(3, 5), (5, 9), (9, 17)]


def _head(**kwargs):
    cfg = dict(
        type='SequenceMaskHead',
        embed_dims=D,
        num_heads=HEADS,
        fpn_channels=FPN,
        conv3d_channels=(4, 4),
        conv3d_groups=2,
        num_groups=1)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def _inputs(B, T, n, seed=0):
    torch.manual_seed(seed)
    query = torch.randn(B, T, n, D)
    memory = torch.randn(B, T, D, *MEM_HW)
    memory_mask = torch.zeros(B, T, *MEM_HW, dtype=torch.bool)
    memory_mask[..., -1] = True  # padded last column
    fpn_feats = [torch.randn(B * T, c, *hw) for c, hw in zip(FPN, FPN_HW)]
    return query, memory, memory_mask, fpn_feats


def test_default_channels():
    assert _head().conv_channels == (52, 24, 12, 6, 3)
    head = SequenceMaskHead()
    assert head.conv_channels == (392, 192, 96, 48, 24)
    assert head.deform_conv.out_channels == 24
    assert head.offset_conv.kernel_size == (1, 1)


@pytest.mark.parametrize('B', [1, 2])
@pytest.mark.parametrize('T', [1, 3])
def test_forward_shape(B, T):
    head = _head()
    head.init_weights()
    out = head(*_inputs(B, T, 2))
    assert out.shape == (B, 2, T, *FPN_HW[-1])
    assert torch.isfinite(out).all()


def test_custom_widths():
    head = _head(
        conv_channels=(52, 24, 16, 8, 8),
        num_groups=4,
        conv3d_channels=(6, ),
        conv3d_groups=3)
    out = head(*_inputs(1, 2, 2))
    assert out.shape == (1, 2, 2, *FPN_HW[-1])


def test_batch_independent_and_instance_equivariant():
    head = _head().eval()
    query, memory, memory_mask, fpn_feats = _inputs(2, 3, 3)
    out = head(query, memory, memory_mask, fpn_feats)
    # Sample 1 alone gives the same masks: no mixing across the batch.
    single = head(query[1:], memory[1:], memory_mask[1:],
                  [f.view(2, 3, *f.shape[1:])[1] for f in fpn_feats])
    torch.testing.assert_close(single[0], out[1], rtol=1e-4, atol=1e-5)
    # Permuting the instance slots permutes the mask sequences.
    perm = torch.tensor([2, 0, 1])
    permuted = head(query[:, :, perm], memory, memory_mask, fpn_feats)
    torch.testing.assert_close(permuted, out[:, perm], rtol=1e-4, atol=1e-5)


def test_attention_maps_match_per_frame_computation():
    head = _head()
    query, memory, memory_mask, _ = _inputs(2, 3, 2)
    attn = head.attention_maps(query, memory, memory_mask)
    assert attn.shape == (2, 3, 2, HEADS, *MEM_HW)
    b, t, dh = 1, 2, D // HEADS
    q = head.query_proj(query[b, t]).view(2, HEADS, dh)
    k = head.key_proj(memory[b, t][None])[0].view(HEADS, dh, -1)
    logits = torch.stack([
        torch.stack([q[j, i] @ k[i] for i in range(HEADS)]) for j in range(2)
    ]) / dh**0.5
    logits[..., memory_mask[b, t].flatten()] = float('-inf')
    expected = logits.flatten(1).softmax(-1).view(2, HEADS, *MEM_HW)
    torch.testing.assert_close(attn[b, t], expected)


def test_padded_memory_gets_zero_attention():
    head = _head()
    query, memory, memory_mask, _ = _inputs(2, 3, 2)
    memory_mask[1, 0, 0, 0] = True
    attn = head.attention_maps(query, memory, memory_mask)
    padded = memory_mask[:, :, None, None].expand_as(attn)
    assert torch.all(attn[padded] == 0)
    assert torch.all(attn[~padded] > 0)
    # VisTR normalises jointly over heads and positions.
    torch.testing.assert_close(attn.flatten(3).sum(-1), torch.ones(2, 3, 2))


def test_deform_conv_is_plain_conv_at_init():
    # Even an init_cfg that touches every Conv2d leaves the offsets at zero.
    head = _head(init_cfg=dict(type='Constant', val=0.5, layer='Conv2d'))
    head.init_weights()
    assert torch.all(head.offset_conv.weight == 0)
    assert torch.all(head.offset_conv.bias == 0)
    x = torch.randn(3, head.conv_channels[-2], 7, 9)
    out = head.deform_conv(x, head.offset_conv(x))
    torch.testing.assert_close(
        out,
        F.conv2d(x, head.deform_conv.weight, padding=1),
        rtol=1e-4,
        atol=1e-5)


def test_backward_reaches_every_parameter():
    head = _head()
    head.init_weights()
    inputs = _inputs(1, 3, 2)
    target = (torch.rand(1, 2, 3, *FPN_HW[-1]) > 0.5).float()
    loss = F.binary_cross_entropy_with_logits(head(*inputs), target)
    loss.backward()
    for name, param in head.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name
    optim = torch.optim.SGD(head.parameters(), lr=0.1)
    optim.step()
    assert head.offset_conv.weight.abs().sum() > 0


def test_bad_config_and_inputs_raise():
    with pytest.raises(ValueError, match='conv_channels'):
        _head(conv_channels=(52, 24, 12))
    with pytest.raises(ValueError, match='num_groups=8'):
        _head(num_groups=8)
    with pytest.raises(ValueError, match='conv3d_groups'):
        _head(conv3d_channels=(5, ))
    head = _head()
    query, memory, memory_mask, fpn_feats = _inputs(2, 3, 2)
    with pytest.raises(ValueError, match=r'fpn_feats\[1\]'):
        head(query, memory, memory_mask,
             [fpn_feats[0], fpn_feats[1][:3], fpn_feats[2]])
    with pytest.raises(ValueError, match='memory_mask'):
        head(query, memory, memory_mask[:, :2], fpn_feats)
