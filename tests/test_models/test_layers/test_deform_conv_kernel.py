"""The Triton deformable conv, run on the CPU by Triton's interpreter."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

pytest.importorskip('triton')

ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))

# Each case: N, C_in, C_out, H, W, kernel, padding, dilation, bias,
# channels-last, offset scale. C_in 70 takes blocks of 128 channels and 64
# pixels; offsets of several pixels reach past every border.
CASES = [
    (2, 5, 3, 6, 7, 3, 1, 1, True, False, 3.0),
    (3, 48, 24, 9, 11, 3, 1, 1, False, True, 3.0),
    (1, 20, 17, 8, 8, 3, 2, 2, True, True, 2.0),
    (2, 4, 4, 5, 6, 1, 0, 1, False, False, 1.0),
    (1, 70, 9, 5, 4, 3, 1, 1, True, False, 40.0),
    (1, 6, 5, 4, 5, 3, 0, 1, True, False, 0.0),
]


def _interpret(code: str) -> str:
    """Run ``code`` in a fresh Python whose Triton kernels run on the CPU
    (the interpreter reads its switch when the kernels are defined)."""
    proc = subprocess.run([sys.executable, '-c',
                           textwrap.dedent(code)],
                          cwd=ROOT,
                          env={
                              **os.environ, 'TRITON_INTERPRET': '1'
                          },
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_matches_torchvision():
    """float32 (float32 matmuls) equals torchvision's deformable conv to
    rounding: kernel sizes, padding, dilation, bias or not, any strides,
    channels that are not a power of two, offsets far outside the image
    and none at all; bf16 inputs give bf16 outputs of the same conv; the
    TF32 switch reaches the matmuls."""
    out = _interpret(f'''
        import torch
        from torchvision.ops import deform_conv2d
        from mmttsrn.models.layers.deform_conv_kernel import (
            fused_deform_conv2d)
        torch.manual_seed(0)
        for (N, C_in, C_out, H, W, k, pad, dil, with_bias, channels_last,
             scale) in {CASES!r}:
            x = torch.randn(N, C_in, H, W)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            h, w = (s + 2 * pad - dil * (k - 1) for s in (H, W))
            offset = scale * torch.randn(N, 2 * k * k, h, w)
            weight = torch.randn(C_out, C_in, k, k)
            bias = torch.randn(C_out) if with_bias else None
            expected = deform_conv2d(
                x, offset, weight, bias, padding=pad, dilation=dil)
            got = fused_deform_conv2d(x, offset, weight, bias, pad, dil,
                                      False)
            assert got.shape == expected.shape and got.dtype == x.dtype
            torch.testing.assert_close(got, expected, rtol=1e-4,
                                       atol=1e-4)
            xb, offb = x.bfloat16(), offset.bfloat16()
            got = fused_deform_conv2d(xb, offb, weight, bias, pad, dil, True)
            assert got.dtype == torch.bfloat16
            expected = deform_conv2d(xb.float(), offb.float(), weight, bias,
                                     padding=pad, dilation=dil)
            torch.testing.assert_close(got.float(), expected, rtol=2e-2,
                                       atol=2e-2)
        print('checked', len({CASES!r}))
    ''')
    assert out.split() == ['checked', str(len(CASES))]


def test_outside_image_is_zero():
    """Every tap sampled past the border reads zeros: the output is the
    bias alone; an empty batch launches nothing."""
    out = _interpret('''
        import torch
        from mmttsrn.models.layers.deform_conv_kernel import (
            fused_deform_conv2d)
        x = torch.randn(2, 3, 5, 6)
        offset = torch.full((2, 18, 5, 6), 100.)
        offset[:, 1::2] = -1e4
        bias = torch.randn(4)
        got = fused_deform_conv2d(x, offset, torch.randn(4, 3, 3, 3), bias,
                                  1, 1, False)
        assert torch.equal(got, bias[:, None, None].expand_as(got)), got
        empty = fused_deform_conv2d(x[:0], offset[:0],
                                    torch.randn(4, 3, 3, 3), bias, 1, 1,
                                    False)
        assert empty.shape == (0, 4, 5, 6)
        print('ok')
    ''')
    assert out.split() == ['ok']


def test_without_triton_the_error_names_the_option(monkeypatch):
    """On a GPU (fake CUDA tensors here) without Triton, ``'triton'`` fails
    with an error that names the option and the way out."""
    import sys

    from mmttsrn.models.layers import deform_conv2d_by_sampling
    monkeypatch.setitem(sys.modules,
                        'mmttsrn.models.layers.deform_conv_kernel', None)
    with FakeTensorMode(), torch.no_grad():
        x = torch.empty(2, 6, 9, 10, device='cuda')
        offset = torch.empty(2, 18, 9, 10, device='cuda')
        weight = torch.empty(5, 6, 3, 3, device='cuda')
        with pytest.raises(ImportError, match='cuda_deform.*grid_sample'):
            deform_conv2d_by_sampling(x, offset, weight, cuda_impl='triton')


def test_fake_tensor_shape():
    """Under fake tensors (torch.compile's tracing, the GPU census) the op
    gives the conv's output shape and x's dtype without running."""
    from mmttsrn.models.layers.deform_conv_kernel import fused_deform_conv2d
    with FakeTensorMode():
        out = fused_deform_conv2d(
            torch.empty(4, 6, 9, 10, dtype=torch.bfloat16),
            torch.empty(4, 18, 7, 8), torch.empty(5, 6, 3, 3), None, 0, 1,
            True)
    assert out.shape == (4, 5, 7, 8) and out.dtype == torch.bfloat16


@pytest.mark.parametrize('capability', [80, 90])
@pytest.mark.parametrize('dtype', ['bf16', 'fp32'])
def test_compiles_for_gpus_without_one(capability, dtype):
    """The interpreter runs what a GPU would reject too; here Triton
    compiles the kernel to a cubin for an A100 (sm_80) and an H100 (sm_90)
    as the mask head of the paper config launches it (48 channels of 80 x
    136, channels-last, to 24; arguments divisible by 16 marked as the JIT
    marks them), with its own ptxas."""
    triton = pytest.importorskip('triton')
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError:
        pytest.skip('this Triton compiles ahead of time differently')
    from mmttsrn.models.layers.deform_conv_kernel import (
        _deform_conv2d_kernel, launch_config)
    config = launch_config(48, 24)
    options = {k: config.pop(k) for k in ('num_warps', 'num_stages')}
    names = _deform_conv2d_kernel.arg_names
    x_stride = dict(sxn=48 * 80 * 136, sxc=1, sxh=48 * 136, sxw=48)
    o_stride = dict(son=18 * 80 * 136, soc=80 * 136, soh=136, sow=1)
    w_stride = dict(swo=48 * 9, swi=9, swh=3, sww=1)
    y_stride = dict(syn=24 * 80 * 136, syc=80 * 136, syh=136, syw=1)
    ints = dict(
        C_in=48, H=80, W=136, C_out=24, h=80, w=136, padding=1, dilation=1,
        **x_stride, **o_stride, **w_stride, **y_stride)
    # The JIT makes 1s constants and marks the others divisible by 16.
    constants = dict(
        KH=3, KW=3, HAS_BIAS=True, PRECISION='tf32', **config,
        **{k: v
           for k, v in ints.items() if v == 1})
    signature = {}
    for name in names:
        if name in constants:
            signature[name] = 'constexpr'
        elif name.endswith('_ptr'):
            signature[name] = '*fp32' if name in ('weight_ptr',
                                                  'bias_ptr') else '*' + dtype
        else:
            signature[name] = 'i32'
    divisible = [
        name for name in names if name not in constants and (
            name.endswith('_ptr') or ints[name] % 16 == 0)
    ]
    source = ASTSource(
        _deform_conv2d_kernel,
        signature,
        constexprs={(names.index(k), ): v
                    for k, v in constants.items()},
        attrs={(names.index(k), ): [['tt.divisibility', 16]]
               for k in divisible})
    compiled = triton.compile(
        source, target=GPUTarget('cuda', capability, 32), options=options)
    assert len(compiled.asm['cubin']) > 0
    assert '_deform_conv2d_kernel' in compiled.asm['ptx']
