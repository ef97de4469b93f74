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


def _unfused_forward(head, query, memory, memory_mask, fpn_feats):
    """The head as a plain composition of its modules: the concatenated
    (memory, attention) per instance, interpolate + add, torchvision's
    deformable conv."""
    B, T, n, d = query.shape
    h, w = memory.shape[-2:]
    attn = head.attention_maps(query, memory, memory_mask)
    x = torch.cat([memory[:, :, None].expand(B, T, n, d, h, w), attn],
                  dim=3).flatten(0, 2)
    x = head.stem(x)
    for i, (feat, adapter) in enumerate(zip(fpn_feats, head.adapters)):
        feat = adapter(feat)
        x = F.interpolate(x, size=feat.shape[-2:], mode='nearest')
        x = (x.unflatten(0, (-1, n)) + feat[:, None]).flatten(0, 1)
        if i < len(head.fpn_convs):
            x = head.fpn_convs[i](x)
    x = head.deform_conv(x, head.offset_conv(x))
    x = head.act(head.deform_norm(x))
    C, H, W = x.shape[1:]
    x = x.view(B, T, n, C, H, W).permute(0, 2, 3, 1, 4, 5).flatten(0, 1)
    return head.conv3d(x).view(B, n, T, H, W)


@pytest.mark.parametrize('mem_hw, fpn_hw', [
    (MEM_HW, FPN_HW),
    ((2, 3), [(4, 6), (8, 12), (16, 24)]),
])
def test_forward_equals_unfused_composition(mem_hw, fpn_hw):
    """The per-frame stem conv, the 2x upsampling and the sampled
    deformable conv are exact rewrites (odd sizes and exact 2x sizes)."""
    head = _head()
    head.init_weights()
    with torch.no_grad():
        # Trained offsets are not zero.
        head.offset_conv.weight.normal_(std=0.3)
        head.offset_conv.bias.normal_()
    query = _inputs(2, 3, 2)[0]
    memory = torch.randn(2, 3, D, *mem_hw)
    memory_mask = torch.zeros(2, 3, *mem_hw, dtype=torch.bool)
    memory_mask[1, :, :, -1] = True
    fpn_feats = [torch.randn(6, c, *hw) for c, hw in zip(FPN, fpn_hw)]
    inputs = (query, memory, memory_mask, fpn_feats)
    out = head(*inputs)
    expected = _unfused_forward(head, *inputs)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    target = (torch.rand_like(out) > 0.5).float()
    grads = []
    for fn in (head, lambda *a: _unfused_forward(head, *a)):
        head.zero_grad()
        F.binary_cross_entropy_with_logits(fn(*inputs), target).backward()
        grads.append({k: p.grad.clone() for k, p in head.named_parameters()})
    for name, grad in grads[0].items():
        # Relative to the gradient's scale: the sums run in another order
        # (offset gradients subtract neighbouring pixels, so they lose most).
        scale = grads[1][name].abs().max()
        assert (grad - grads[1][name]).abs().max() <= 1e-3 * scale, name


@pytest.mark.parametrize('B, n', [(1, 2), (2, 2), (1, 1)])
def test_cpu_volumes_are_channels_last(B, n):
    """On the CPU the 3-D convs get channels-last volumes (oneDNN's fast
    layout) for every batch size: for B = 1 a reshape of the regrouped
    frames would be a view in another layout."""
    head = _head()
    layouts = []
    head.conv3d.register_forward_pre_hook(lambda _, args: layouts.append(
        args[0].is_contiguous(memory_format=torch.channels_last_3d)))
    head(*_inputs(B, 3, n))
    assert layouts == [True]


@pytest.mark.parametrize('B', [1, 2])
def test_cpu_frame_chunk_gives_the_same_masks(B):
    """With ``cpu_frame_chunk`` inference runs the 2-D stack on that many
    frames at a time (the last chunk shorter) and gets the masks of the
    whole clip; with autograd the clip runs at once."""
    head = _head()
    head.init_weights()
    with torch.no_grad():
        head.offset_conv.weight.normal_(std=0.3)
        head.offset_conv.bias.normal_()
    inputs = _inputs(B, 5, 2)
    sizes, layouts = [], []
    head.stem[1].register_forward_pre_hook(
        lambda _, args: sizes.append(len(args[0])))
    head.conv3d.register_forward_pre_hook(lambda _, args: layouts.append(
        args[0].is_contiguous(memory_format=torch.channels_last_3d)))
    with torch.no_grad():
        expected = head(*inputs)
        head.cpu_frame_chunk = 2
        out = head(*inputs)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # B * chunk frames * n instances per call.
    assert sizes == [B * 5 * 2, B * 2 * 2, B * 2 * 2, B * 1 * 2]
    assert layouts == [True, True]
    sizes.clear()
    head(*inputs).sum().backward()
    assert sizes == [B * 5 * 2]
    # A traced or exported graph gets the whole clip too.
    sizes.clear()
    with torch.no_grad():
        torch.jit.trace(head, inputs[:3] + ([*inputs[3]], ), check_trace=False)
    assert sizes == [B * 5 * 2]
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match='cpu_frame_chunk'):
            _head(cpu_frame_chunk=bad)


# The state dict keys and, for seed 0, the initial weights and one output of
# `_head(pixel_embed=True)` as the head was before its constructor was split
# into builders: a checkpoint of then loads, and a seed gives the same model.
STATE_DICT_KEYS = [
    'query_proj.weight', 'query_proj.bias', 'key_proj.weight',
    'key_proj.bias', 'stem.0.conv.weight', 'stem.0.gn.weight',
    'stem.0.gn.bias', 'stem.1.conv.weight', 'stem.1.gn.weight',
    'stem.1.gn.bias', 'adapters.0.weight', 'adapters.0.bias',
    'adapters.1.weight', 'adapters.1.bias', 'adapters.2.weight',
    'adapters.2.bias', 'fpn_convs.0.conv.weight', 'fpn_convs.0.gn.weight',
    'fpn_convs.0.gn.bias', 'fpn_convs.1.conv.weight', 'fpn_convs.1.gn.weight',
    'fpn_convs.1.gn.bias', 'offset_conv.weight', 'offset_conv.bias',
    'deform_conv.weight', 'deform_norm.weight', 'deform_norm.bias',
    'conv3d.0.conv.weight', 'conv3d.0.gn.weight', 'conv3d.0.gn.bias',
    'conv3d.1.conv.weight', 'conv3d.1.gn.weight', 'conv3d.1.gn.bias',
    'conv3d.2.weight', 'conv3d.2.bias'
]
PIXEL_EMBED_KEYS = [
    'pixel_memory_proj.weight', 'pixel_memory_proj.bias',
    'pixel_feat_proj.weight', 'pixel_feat_proj.bias',
    'pixel_embed.0.conv.weight', 'pixel_embed.0.gn.weight',
    'pixel_embed.0.gn.bias', 'pixel_embed.1.weight', 'pixel_embed.1.bias',
    'mask_embed.0.weight', 'mask_embed.0.bias', 'mask_embed.2.weight',
    'mask_embed.2.bias'
]
# pixel_embed: (sum of the weights, output weighted by linspace(-1, 1),
# sum of the squared output).
SEED0_CHECKSUMS = {
    False: (122.62721282790244, -33.78650778177975, 577.4445045818879),
    True: (158.60899718472865, -2.3047506098445023, 998.5458241454573),
}


@pytest.mark.parametrize('pixel_embed', [False, True])
def test_state_dict_and_seeded_output_are_unchanged(pixel_embed):
    torch.manual_seed(0)
    head = _head(pixel_embed=pixel_embed)
    head.init_weights()
    head.eval()
    state = head.state_dict()
    assert list(state) == STATE_DICT_KEYS + PIXEL_EMBED_KEYS * pixel_embed
    with torch.no_grad():
        out = head(*_inputs(2, 3, 2, seed=1)).double()
    weights = torch.linspace(-1, 1, out.numel(), dtype=torch.float64)
    checksums = (sum(v.double().sum().item() for v in state.values()),
                 (out.flatten() * weights).sum().item(),
                 out.pow(2).sum().item())
    # The weighted sum cancels: the thread count changes its 6th digit.
    assert checksums == pytest.approx(
        SEED0_CHECKSUMS[pixel_embed], rel=1e-6, abs=1e-4)


@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('size', [(6, 10), (7, 9)])
def test_add_fpn(channels_last, size):
    """Nearest upsampling plus the frame's FPN feature for each instance,
    in the requested memory format, with and without autograd (the exact
    2x case is one broadcast add, other sizes interpolate)."""
    n, C = 3, 4
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2 * n, C, 3, 5).contiguous(memory_format=fmt)
    feat = torch.randn(2, C, *size).contiguous(memory_format=fmt)
    expected = (F.interpolate(x, size=size, mode='nearest').unflatten(
        0, (2, n)) + feat[:, None]).flatten(0, 1)
    with torch.no_grad():
        out = SequenceMaskHead._add_fpn(x, feat, n, channels_last)
    assert out.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    x.requires_grad_()
    feat.requires_grad_()
    out = SequenceMaskHead._add_fpn(x, feat, n, channels_last)
    target = torch.randn_like(out)
    grads = torch.autograd.grad((out * target).sum(), (x, feat))
    expected = torch.autograd.grad(
        ((F.interpolate(x, size=size, mode='nearest').unflatten(
            0, (2, n)) + feat[:, None]).flatten(0, 1) * target).sum(),
        (x, feat))
    for grad, ref in zip(grads, expected):
        torch.testing.assert_close(grad, ref)


def test_cuda_deform_reaches_the_deformable_conv(monkeypatch):
    """``cuda_deform`` is passed to the sampled deformable conv (which uses
    it on a GPU without autograd) and must name one of its ways."""
    from mmttsrn.models.heads import sequence_mask_head
    seen = []
    sampled = sequence_mask_head.deform_conv2d_by_sampling
    monkeypatch.setattr(
        sequence_mask_head, 'deform_conv2d_by_sampling',
        lambda *a, **kw: seen.append(kw['cuda_impl']) or sampled(*a, **kw))
    impls = ('grid_sample', 'compiled', 'triton')
    for impl in impls:
        with torch.no_grad():
            _head(cuda_deform=impl)(*_inputs(1, 2, 2))
    assert seen == list(impls)
    with pytest.raises(ValueError, match='cuda_deform'):
        _head(cuda_deform=True)
