"""The deformable conv of GPU inference as one Triton kernel.

Each program takes a block of output pixels of one image and, tap by tap,
samples the input's channels at the tap's deformed positions (bilinear,
zero outside, as torchvision's ``deform_conv2d``) and multiplies them by the
tap's (C_in, C_out) weight, accumulating in float32. Nothing but the output
is written: the three-op path (:func:`_all_taps_sum`) writes every tap's
float32 projection, its samples and their sum, and reads them back, some 15
GB per bf16 clip of the paper config (``gpu_op_census.py``).

Imported only when used (``SequenceMaskHead(cuda_deform='triton')``), as
Triton is not part of a CPU-only PyTorch. The tests run the kernel on the
CPU with Triton's interpreter (``TRITON_INTERPRET=1``).
"""
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ['fused_deform_conv2d', 'launch_config']


@triton.jit
def _corner(x_img, ci, in_ci, valid, yc, xc, H, W, sxc, sxh, sxw):
    """(BLOCK_P, BLOCK_CI) float32 input at integer positions (yc, xc)
    given as floats, zero outside the image or where not ``valid``."""
    inside = valid & (yc >= 0) & (yc <= H - 1) & (xc >= 0) & (xc <= W - 1)
    # Positions outside are never read; 0 keeps their addresses in range.
    yi = tl.where(inside, yc, 0.).to(tl.int64)
    xi = tl.where(inside, xc, 0.).to(tl.int64)
    ptrs = x_img + (yi * sxh + xi * sxw)[:, None] + ci[None, :] * sxc
    return tl.load(
        ptrs, mask=inside[:, None] & in_ci[None, :], other=0.).to(tl.float32)


@triton.jit
def _deform_conv2d_kernel(x_ptr, offset_ptr, weight_ptr, bias_ptr, out_ptr,
                          C_in, H, W, C_out, h, w, padding, dilation, sxn,
                          sxc, sxh, sxw, son, soc, soh, sow, swo, swi, swh,
                          sww, syn, syc, syh, syw, KH: tl.constexpr,
                          KW: tl.constexpr, HAS_BIAS: tl.constexpr,
                          BLOCK_P: tl.constexpr, BLOCK_CI: tl.constexpr,
                          BLOCK_CO: tl.constexpr,
                          PRECISION: tl.constexpr):
    """out (N, C_out, h, w) of x (N, C_in, H, W), offset (N, 2*KH*KW, h,
    w), weight (C_out, C_in, KH, KW) and bias (C_out, ), each given by its
    pointer and strides; one program per BLOCK_P output pixels of an image.
    """
    blocks = tl.cdiv(h * w, BLOCK_P)
    pid = tl.program_id(0)
    n = (pid // blocks).to(tl.int64)
    p = (pid % blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    in_p = p < h * w
    oy = p // w
    ox = p % w
    ci = tl.arange(0, BLOCK_CI)
    co = tl.arange(0, BLOCK_CO)
    in_ci = ci < C_in
    in_co = co < C_out
    x_img = x_ptr + n * sxn
    offsets = offset_ptr + n * son + oy * soh + ox * sow
    acc = tl.zeros((BLOCK_P, BLOCK_CO), dtype=tl.float32)
    for k in tl.range(0, KH * KW):
        dy = tl.load(offsets + 2 * k * soc, mask=in_p, other=0.)
        dx = tl.load(offsets + (2 * k + 1) * soc, mask=in_p, other=0.)
        # torchvision's position: the integer tap position plus the offset.
        y = (oy - padding + k // KW * dilation).to(tl.float32) + dy.to(
            tl.float32)
        x = (ox - padding + k % KW * dilation).to(tl.float32) + dx.to(
            tl.float32)
        y0 = tl.floor(y)
        x0 = tl.floor(x)
        ly = y - y0
        lx = x - x0
        hy = 1. - ly
        hx = 1. - lx
        sampled = (hy * hx)[:, None] * _corner(x_img, ci, in_ci, in_p, y0,
                                               x0, H, W, sxc, sxh, sxw)
        sampled += (hy * lx)[:, None] * _corner(
            x_img, ci, in_ci, in_p, y0, x0 + 1, H, W, sxc, sxh, sxw)
        sampled += (ly * hx)[:, None] * _corner(
            x_img, ci, in_ci, in_p, y0 + 1, x0, H, W, sxc, sxh, sxw)
        sampled += (ly * lx)[:, None] * _corner(
            x_img, ci, in_ci, in_p, y0 + 1, x0 + 1, H, W, sxc, sxh, sxw)
        kernel = tl.load(
            weight_ptr + ci[:, None] * swi + co[None, :] * swo +
            k // KW * swh + k % KW * sww,
            mask=in_ci[:, None] & in_co[None, :],
            other=0.).to(tl.float32)
        acc = tl.dot(sampled, kernel, acc, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(
            bias_ptr + co, mask=in_co, other=0.).to(tl.float32)[None, :]
    out = (out_ptr + n * syn + co[None, :] * syc + oy[:, None] * syh +
           ox[:, None] * syw)
    tl.store(
        out,
        acc.to(out_ptr.dtype.element_ty),
        mask=in_p[:, None] & in_co[None, :])


def _block(size: int) -> int:
    # tl.dot takes power-of-two blocks of 16 or more.
    return max(16, triton.next_power_of_2(size))


def launch_config(in_channels: int, out_channels: int) -> dict:
    """The kernel's block sizes and launch options for these channels."""
    block_ci = _block(in_channels)
    # 4K float32 samples per program over eight warps: compiled for sm_90,
    # 64 pixels of 48 bf16 channels take 107 registers a thread, without
    # spills, so that two programs share an SM (docs/benchmark.md). The
    # loads of the next tap need not be in flight (num_stages=1).
    return dict(
        BLOCK_P=max(16, min(64, 4096 // block_ci)),
        BLOCK_CI=block_ci,
        BLOCK_CO=_block(out_channels),
        num_warps=8,
        num_stages=1)


@torch.library.custom_op('mmttsrn::fused_deform_conv2d', mutates_args=())
def fused_deform_conv2d(x: Tensor, offset: Tensor, weight: Tensor,
                        bias: Optional[Tensor], padding: int, dilation: int,
                        tf32: bool) -> Tensor:
    """``torchvision.ops.deform_conv2d`` (stride 1, one offset group, no
    modulation mask) in one kernel, without autograd.

    Args:
        x (Tensor): Input (N, C_in, H, W), any float dtype and strides;
            channels-last, whose pixels' channels are contiguous, is the
            layout the kernel reads fast.
        offset (Tensor): (N, 2*kh*kw, h, w), (dy, dx) per tap, row-major
            tap order, as torchvision.
        weight (Tensor): (C_out, C_in, kh, kw).
        bias (Tensor, optional): (C_out, ).
        padding (int): Zero padding of both sides.
        dilation (int): Kernel dilation.
        tf32 (bool): The per-tap matmuls in TF32 (as cuDNN convs with
            ``torch.backends.cudnn.allow_tf32``), else in float32.

    Returns:
        Tensor: (N, C_out, h, w) in x's dtype; samples, products and sums
        in float32.
    """
    N, C_in, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    h, w = offset.shape[-2:]
    out = x.new_empty(N, C_out, h, w)
    if out.numel() == 0:
        return out
    config = launch_config(C_in, C_out)
    grid = (N * triton.cdiv(h * w, config['BLOCK_P']), )
    _deform_conv2d_kernel[grid](
        x,
        offset,
        weight,
        weight if bias is None else bias,
        out,
        C_in,
        H,
        W,
        C_out,
        h,
        w,
        padding,
        dilation,
        *x.stride(),
        *offset.stride(),
        *weight.stride(),
        *out.stride(),
        KH=kh,
        KW=kw,
        HAS_BIAS=bias is not None,
        PRECISION='tf32' if tf32 else 'ieee',
        **config)
    return out


@fused_deform_conv2d.register_fake
def _(x, offset, weight, bias, padding, dilation, tf32):
    return x.new_empty(len(x), len(weight), *offset.shape[-2:])
