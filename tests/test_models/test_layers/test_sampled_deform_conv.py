import pytest
import torch
from torchvision.ops import deform_conv2d

from mmttsrn.models.layers import deform_conv2d_by_sampling
from mmttsrn.models.layers.sampled_deform_conv import (_all_tap_kernels,
                                                       _all_taps_inference,
                                                       _all_taps_sum,
                                                       _SampledDeformConv2d,
                                                       _tap_starts, _tap_sum)


def _args(channels_last=False, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(3, 6, 7, 11, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    # Offsets of several pixels reach past every border.
    offset = 3 * torch.randn(3, 18, 7, 11, dtype=dtype)
    weight = torch.randn(5, 6, 3, 3, dtype=dtype)
    bias = torch.randn(5, dtype=dtype)
    return x, offset, weight, bias


def _grads(fn, args, target):
    args = [t.clone().requires_grad_() for t in args]
    out = fn(*args)
    (out * target).sum().backward()
    return out, [t.grad for t in args]


@pytest.mark.parametrize('dilation', [1, 2])
@pytest.mark.parametrize('channels_last', [False, True])
def test_matches_torchvision(dilation, channels_last):
    """Values and gradients of the training path (autograd Function) and
    values of the inference path equal torchvision's deformable conv."""
    args = _args(channels_last)
    expected = deform_conv2d(*args, padding=dilation, dilation=dilation)
    target = torch.randn_like(expected)
    ours = _grads(
        lambda *a: deform_conv2d_by_sampling(
            *a, padding=dilation, dilation=dilation), args, target)
    ref = _grads(
        lambda *a: deform_conv2d(*a, padding=dilation, dilation=dilation),
        args, target)
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-5, atol=1e-5)
    for name, grad, ref_grad in zip(('x', 'offset', 'weight', 'bias'),
                                    ours[1], ref[1]):
        torch.testing.assert_close(
            grad, ref_grad, rtol=1e-4, atol=1e-4, msg=name)
    with torch.no_grad():
        out = deform_conv2d_by_sampling(
            *args, padding=dilation, dilation=dilation)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('chunk_bytes', [2**40, 1])
def test_function_equals_autograd_of_the_tap_sum(chunk_bytes):
    """The hand-written backward gives autograd's gradients of the same tap
    sum, to float32 rounding, also when only some inputs need gradients,
    with its sampling backward on the whole batch or image by image."""
    x, offset, weight, _ = _args(channels_last=True)
    target = torch.randn(3, 5, 7, 11)
    for needs in [(True, True, True), (False, True, False),
                  (False, False, True), (True, False, False)]:
        grads = []
        for fn in (lambda *a: _SampledDeformConv2d.apply(
                *a, 1, 1, chunk_bytes),
                   lambda *a: _tap_sum(*a, 1, 1, torch.float32)):
            args = [
                t.clone().requires_grad_(need)
                for t, need in zip((x, offset, weight), needs)
            ]
            out = fn(*args)
            (out * target).sum().backward()
            grads.append([t.grad for t in args])
        for grad, ref in zip(*grads):
            if ref is None:
                assert grad is None
            else:
                torch.testing.assert_close(grad, ref, rtol=1e-5, atol=1e-5)


def test_gradcheck_float64():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    offset = (2 * torch.randn(2, 18, 5, 6, dtype=torch.float64))
    # Away from integer positions, where bilinear sampling has kinks.
    offset = (offset.round() + 0.3).requires_grad_()
    weight = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    for chunk_bytes in (2**40, 1):
        assert torch.autograd.gradcheck(
            lambda *a: deform_conv2d_by_sampling(
                *a, padding=2, dilation=2, chunk_bytes=chunk_bytes),
            (x, offset, weight))


def test_backward_twice_with_retained_graph():
    args = [t.requires_grad_() for t in _args()[:3]]
    out = deform_conv2d_by_sampling(*args)
    first = torch.autograd.grad(out.square().sum(), args, retain_graph=True)
    second = torch.autograd.grad(out.square().sum(), args)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_paths():
    """The Function runs only where autograd needs it in float32/64 without
    autocast; the tap sum with autograd's ops elsewhere."""
    x, offset, weight, _ = _args()
    weight.requires_grad_()
    assert deform_conv2d_by_sampling(x, offset, weight).grad_fn.name() == \
        '_SampledDeformConv2dBackward'
    with torch.no_grad():
        assert deform_conv2d_by_sampling(x, offset, weight).grad_fn is None
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = deform_conv2d_by_sampling(x, offset, weight)
    assert out.dtype == torch.float32
    assert out.grad_fn.name() != '_SampledDeformConv2dBackward'
    out.sum().backward()
    assert weight.grad is not None


@pytest.mark.parametrize('chunk_bytes', [1, 2 * 5 * 7 * 11 * 4, 2**40])
def test_inference_in_slices_of_the_batch(chunk_bytes, monkeypatch):
    """Without autograd the batch runs in slices of at most ``chunk_bytes``
    per tap (one image at least), with the values of the whole batch."""
    from mmttsrn.models.layers import sampled_deform_conv
    x, offset, weight, bias = _args(channels_last=True)
    expected = deform_conv2d(x, offset, weight, bias, padding=1)
    sizes = []
    tap_sum = sampled_deform_conv._tap_sum
    monkeypatch.setattr(
        sampled_deform_conv, '_tap_sum',
        lambda x, *a, **k: sizes.append(len(x)) or tap_sum(x, *a, **k))
    with torch.no_grad():
        out = deform_conv2d_by_sampling(
            x, offset, weight, bias, chunk_bytes=chunk_bytes)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert sizes == {1: [1, 1, 1], 2**40: [3]}.get(chunk_bytes, [2, 1])


def test_is_graph_capture():
    from mmttsrn.models.layers import is_graph_capture
    seen = []

    def record(x):
        seen.append(is_graph_capture())
        return x * 2

    record(torch.ones(1))
    torch.jit.trace(record, torch.ones(1), check_trace=False)
    assert seen == [False, True]


def test_checks_offset_shape():
    x = torch.randn(2, 4, 5, 5)
    with pytest.raises(ValueError, match='offset must have shape'):
        deform_conv2d_by_sampling(x, torch.zeros(2, 9, 5, 5),
                                  torch.randn(3, 4, 3, 3))


@pytest.mark.parametrize('dilation', [1, 2])
@pytest.mark.parametrize('kernel', [(3, 3), (1, 3)])
def test_all_taps_at_once_match_torchvision(dilation, kernel):
    """The GPU path's three ops (every tap's projection, one grid_sample,
    a sum over taps) give torchvision's values, here on the CPU."""
    x, _, _, _ = _args()
    kh, kw = kernel
    weight = torch.randn(5, 6, kh, kw)
    pad = dilation * (kw // 2)
    out_h = 7 + 2 * pad - dilation * (kh - 1)
    offset = 3 * torch.randn(3, 2 * kh * kw, out_h, 11)
    expected = deform_conv2d(
        x, offset, weight, padding=(pad, pad), dilation=dilation)
    with torch.no_grad():
        starts = _tap_starts(kh, kw, offset.shape[-2:], x.shape[-2:], pad,
                             dilation, x.device)
        got = _all_taps_sum(x, offset, _all_tap_kernels(weight), starts)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('chunk_bytes', [1, 2**28])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_all_taps_inference(chunk_bytes, dtype):
    """GPU inference, here on the CPU: in slices of the batch or all at
    once, float32 inside, the bias added and the result in x's dtype
    (rounded once: bf16 within one rounding of torchvision's)."""
    x, offset, weight, bias = (t.to(dtype) for t in _args())
    weight, bias = weight.float(), bias.float()
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    for b in (bias, None):
        expected = deform_conv2d(
            x.float(), offset.float(), weight, b, padding=1)
        with torch.no_grad():
            got = _all_taps_inference(x, offset, weight, b, 1, 1,
                                      chunk_bytes)
        assert got.dtype == dtype
        torch.testing.assert_close(got, expected.to(dtype), **tol)


def test_all_taps_inference_compiled(monkeypatch):
    """``compiled`` runs each slice through torch.compile (inductor; here
    its CPU backend) with the values of the eager ops."""
    from mmttsrn.models.layers import sampled_deform_conv
    monkeypatch.setattr(sampled_deform_conv, '_compiled_all_taps_into', None)
    calls = []
    compile_ = torch.compile
    monkeypatch.setattr(
        torch, 'compile',
        lambda fn, **kw: calls.append(fn) or compile_(fn, **kw))
    x, offset, weight, bias = (t.to(torch.bfloat16) for t in _args())
    weight, bias = weight.float(), bias.float()
    with torch.no_grad():
        eager = _all_taps_inference(x, offset, weight, bias, 1, 1, 1)
        got = _all_taps_inference(x, offset, weight, bias, 1, 1, 1,
                                  compiled=True)
    assert calls == [sampled_deform_conv._all_taps_into]
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, eager)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('cuda_chunk_bytes', [1, 2**28])
def test_gpu_inference_matches_torchvision(cuda_chunk_bytes):
    """On a GPU without autograd, in slices of the batch or all at once,
    also under bf16 autocast (sampled in float32 as torchvision's)."""
    x, offset, weight, bias = (t.cuda() for t in _args())
    expected = deform_conv2d(x, offset, weight, bias, padding=1)
    with torch.no_grad():
        got = deform_conv2d_by_sampling(
            x, offset, weight, bias, cuda_chunk_bytes=cuda_chunk_bytes)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        with torch.autocast('cuda', dtype=torch.bfloat16):
            got = deform_conv2d_by_sampling(
                x, offset, weight, bias, cuda_chunk_bytes=cuda_chunk_bytes)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('impl', ['compiled', 'triton'])
def test_gpu_inference_fused_matches_torchvision(impl, monkeypatch):
    """``cuda_impl='compiled'`` (inductor's kernel) and ``'triton'`` (ours)
    on a GPU, also under bf16 autocast and inside a CUDA graph (float32
    matmuls: TF32 off)."""
    from mmttsrn.models.layers.cuda_graph import CUDAGraphCache
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    x, offset, weight, bias = (t.cuda() for t in _args(impl == 'triton'))
    expected = deform_conv2d(x, offset, weight, bias, padding=1)

    def conv(x, offset):
        return deform_conv2d_by_sampling(
            x, offset, weight, bias, cuda_impl=impl)

    with torch.no_grad():
        torch.testing.assert_close(
            conv(x, offset), expected, rtol=1e-4, atol=1e-4)
        with torch.autocast('cuda', dtype=torch.bfloat16):
            got = conv(x.bfloat16(), offset.bfloat16())
        assert got.dtype == torch.bfloat16
        reference = deform_conv2d(
            x.bfloat16().float(), offset.bfloat16().float(), weight, bias,
            padding=1)
        torch.testing.assert_close(got, reference.bfloat16())
        graphed = CUDAGraphCache(conv, max_graphs=1)
        for _ in range(2):
            x, offset = (torch.randn_like(t) for t in (x, offset))
            torch.testing.assert_close(
                graphed(x, offset),
                deform_conv2d(x, offset, weight, bias, padding=1),
                rtol=1e-4, atol=1e-4)


def test_unknown_cuda_impl_is_refused():
    with pytest.raises(ValueError, match="cuda_impl must be one of"):
        deform_conv2d_by_sampling(*_args(), cuda_impl='cudnn')
