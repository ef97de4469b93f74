"""Deformable convolution written with ``grid_sample`` (the mask head's
deformable conv on the CPU, in GPU inference and in CUDA graphs; GPU
inference may instead run one Triton kernel, :mod:`.deform_conv_kernel`,
chosen by ``cuda_impl``).

``torchvision.ops.deform_conv2d`` (stride 1, one offset group, no modulation
mask) as a sum over kernel taps: bilinear sampling is linear and the same for
every channel, so sampling ``W_k @ x`` at tap k's shifted positions and
summing over k gives the deformable conv, while sampling ``C_out`` instead of
``C_in`` channels. torchvision's CPU kernel runs its bilinear im2col in one
thread; ``grid_sample`` and the matmuls use all cores.

At video sizes much of these ops' CPU time goes to faulting in fresh memory
(glibc maps every block above 32 MiB on its own and unmaps it on ``free``),
so both paths allocate as little as they can. Without autograd the batch
runs in slices small enough for malloc to reuse their memory. With autograd
a hand-written backward accumulates the input gradient of all taps in one
buffer, where autograd's own backward allocates one per tap and adds them
up.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .graph_capture import is_graph_capture

__all__ = ['deform_conv2d_by_sampling', 'CUDA_IMPLS']

# What GPU inference can run (see deform_conv2d_by_sampling's cuda_impl).
CUDA_IMPLS = ('grid_sample', 'compiled', 'triton')


def _tap_starts(kh: int,
                kw: int,
                out_size: Tuple[int, int],
                in_size: Tuple[int, int],
                padding: int,
                dilation: int,
                device: torch.device,
                dtype: torch.dtype = torch.float32) -> Tuple[Tensor, Tensor]:
    """``grid_sample`` coordinates of every undeformed tap: x (kh*kw, 1, w)
    and y (kh*kw, h, 1), in ``dtype``. The same for every image and
    slice."""
    H, W = in_size
    h, w = out_size
    tap = torch.arange(kh * kw, device=device)
    tap_y = (tap // kw * dilation - padding)[:, None, None]
    tap_x = (tap % kw * dilation - padding)[:, None, None]
    ys = torch.arange(h, device=device)[:, None]
    xs = torch.arange(w, device=device)
    # Pixel p -> grid_sample coordinate (align_corners=False): (2p+1)/S-1.
    return ((2 * (xs + tap_x) + 1).to(dtype) / W - 1,
            (2 * (ys + tap_y) + 1).to(dtype) / H - 1)


def _tap_grid(offset: Tensor, k: int, starts: Tuple[Tensor, Tensor],
              in_size: Tuple[int, int]) -> Tensor:
    """``grid_sample`` coordinates (N, h, w, 2) of kernel tap k: its
    undeformed positions (:func:`_tap_starts`) plus the scaled offsets.

    Args:
        offset (Tensor): (N, taps, 2, h, w), (dy, dx) per tap.
        k (int): Tap index, row-major over the (kh, kw) kernel.
        starts (tuple[Tensor, Tensor]): :func:`_tap_starts`; the grid takes
            their dtype.
        in_size (tuple[int, int]): Input (H, W).
    """
    H, W = in_size
    # grid (x, y) takes the offset's (dx, dy); a pixel of offset moves the
    # coordinate by 2/S.
    return torch.stack([
        torch.add(starts[0][k], offset[:, k, 1], alpha=2 / W),
        torch.add(starts[1][k], offset[:, k, 0], alpha=2 / H)
    ], -1)


def _all_tap_grids(offset: Tensor, starts: Tuple[Tensor, Tensor],
                   in_size: Tuple[int, int]) -> Tensor:
    """:func:`_tap_grid` of every tap at once: (N*kh*kw, h, w, 2) float32.

    Each coordinate is one fused op over the batch, the undeformed tap
    positions (:func:`_tap_starts`) plus the scaled offsets, written into a
    plane of its own: the grid is a (2, N*kh*kw, h, w) tensor seen as
    (N*kh*kw, h, w, 2), whose strides ``grid_sample`` follows.

    Args:
        offset (Tensor): (N, kh*kw, 2, h, w), any float dtype.
    """
    H, W = in_size
    N, taps, _, h, w = offset.shape
    grid = offset.new_empty(2, N, taps, h, w, dtype=torch.float32)
    # grid (x, y) takes the offset's (dx, dy); a pixel of offset moves the
    # coordinate by 2/S.
    axes = ((W, starts[0], offset[:, :, 1]), (H, starts[1], offset[:, :, 0]))
    for axis, (size, start, delta) in enumerate(axes):
        torch.add(start, delta, alpha=2 / size, out=grid[axis])
    return grid.permute(1, 2, 3, 4, 0).flatten(0, 1)


def _sample(projected: Tensor, grid: Tensor) -> Tensor:
    """Bilinear samples (N, C, h, w) of channels-last rows ``projected``
    (N, H, W, C) at ``grid``, zero outside."""
    return F.grid_sample(
        projected.permute(0, 3, 1, 2),
        grid,
        mode='bilinear',
        padding_mode='zeros',
        align_corners=False)


def _rows(x: Tensor) -> Tensor:
    """Channels-last pixel rows (N*H*W, C) of x (N, C, H, W); a view for
    channels-last x."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _tap_kernels(weight: Tensor) -> Tensor:
    """One (C_in, C_out) matrix per tap: (kh*kw, C_in, C_out)."""
    out_channels, in_channels, kh, kw = weight.shape
    return weight.permute(2, 3, 1, 0).reshape(kh * kw, in_channels,
                                              out_channels)


def _tap_sum(x: Tensor,
             offset: Tensor,
             weight: Tensor,
             padding: int,
             dilation: int,
             dtype: torch.dtype,
             projections: Optional[List[Tensor]] = None,
             out: Optional[Tensor] = None) -> Tensor:
    """Sum over taps of the samples of ``W_k @ x`` at tap k's positions.

    One (N*H*W, C_in) @ (C_in, C_out) matmul per tap, then ``grid_sample``
    in ``dtype``. A loop over the kh*kw taps (not over data) keeps one tap's
    samples in memory at a time.

    Args:
        x, offset, weight, padding, dilation: As
            :func:`deform_conv2d_by_sampling`.
        dtype (torch.dtype): Dtype of the sample positions and sampling.
        projections (list, optional): Receives each tap's (N*H*W, C_out)
            projection.
        out (Tensor, optional): (N, C_out, H', W') in ``dtype`` to write
            the sum into, without autograd.

    Returns:
        Tensor: (N, C_out, H', W') in ``dtype``.
    """
    N, _, H, W = x.shape
    out_channels, _, kh, kw = weight.shape
    offset = offset.to(dtype).reshape(N, kh * kw, 2, *offset.shape[-2:])
    kernels = _tap_kernels(weight)
    pixels = _rows(x)
    starts = _tap_starts(kh, kw, offset.shape[-2:], (H, W), padding,
                         dilation, x.device, dtype)
    for k in range(kh * kw):
        projected = pixels @ kernels[k]
        if projections is not None:
            projections.append(projected)
        sampled = _sample(
            projected.view(N, H, W, out_channels).to(dtype),
            _tap_grid(offset, k, starts, (H, W)))
        if out is None:
            out = sampled
        elif k == 0:
            out.copy_(sampled)
        else:
            out.add_(sampled)
    return out


def _all_tap_kernels(weight: Tensor) -> Tensor:
    """The 1x1 conv weight (kh*kw*C_out, C_in, 1, 1), float32, that projects
    an input to every tap's ``C_out`` channels, tap-major."""
    out_channels, in_channels, kh, kw = weight.shape
    return weight.permute(2, 3, 0, 1).reshape(kh * kw * out_channels,
                                              in_channels, 1, 1).float()


def _all_taps_sum(x: Tensor,
                  offset: Tensor,
                  kernels: Tensor,
                  starts: Tuple[Tensor, Tensor],
                  out: Optional[Tensor] = None) -> Tensor:
    """:func:`_tap_sum` in float32 with every tap in the same three ops
    (``kernels``: :func:`_all_tap_kernels`; ``starts``: :func:`_tap_starts`,
    which hold the padding and dilation; both made once per call of the
    conv, not per slice):
    a 1x1 conv projects x to each tap's ``C_out`` channels, (N, kh*kw*C_out,
    H, W), which is (N*kh*kw, C_out, H, W) without a copy; one
    ``grid_sample`` samples each tap's image at its positions; a sum adds
    the taps (into ``out`` if given, without autograd). Few large ops for a
    GPU, at the cost of kh*kw projections in memory at once (see
    :func:`deform_conv2d_by_sampling`)."""
    N, _, H, W = x.shape
    taps = len(starts[0])
    out_channels = len(kernels) // taps
    h, w = offset.shape[-2:]
    # float32 as torchvision's kernel, also under autocast.
    with torch.autocast(x.device.type, enabled=False):
        projected = F.conv2d(x.float(), kernels)
        grid = _all_tap_grids(
            offset.reshape(N, taps, 2, h, w), starts, (H, W))
        sampled = F.grid_sample(
            projected.view(N * taps, out_channels, H, W),
            grid,
            mode='bilinear',
            padding_mode='zeros',
            align_corners=False)
    return torch.sum(
        sampled.view(N, taps, out_channels, h, w), 1, out=out)


def _all_taps_into(x: Tensor, offset: Tensor, kernels: Tensor,
                   bias: Optional[Tensor], starts: Tuple[Tensor, Tensor],
                   out: Tensor) -> None:
    """:func:`_all_taps_sum` plus the bias, written into ``out`` (N, C_out,
    H', W') in its dtype: the sum itself when ``out`` is float32 without a
    bias, else one op that adds the bias and casts."""
    if bias is None and out.dtype == torch.float32:
        _all_taps_sum(x, offset, kernels, starts, out=out)
        return
    total = _all_taps_sum(x, offset, kernels, starts)
    if bias is None:
        out.copy_(total)
    else:
        torch.add(total, bias.float()[:, None, None], out=out)


_compiled_all_taps_into = None


def _all_taps_inference(x: Tensor,
                        offset: Tensor,
                        weight: Tensor,
                        bias: Optional[Tensor],
                        padding: int,
                        dilation: int,
                        chunk_bytes: int,
                        compiled: bool = False) -> Tensor:
    """GPU inference (no autograd): :func:`_all_taps_into` on slices of the
    batch (:func:`_batch_slices` of every tap's projection), each written
    into its part of the output.

    With ``compiled``, each slice runs :func:`_all_taps_into` compiled by
    ``torch.compile`` (one process-wide compilation per input signature):
    on a GPU inductor fuses the grid, the sampling, the tap sum, the bias
    and the cast into one kernel after the projection, so neither the
    samples of every tap nor a float32 sum are written to memory.

    Returns:
        Tensor: (N, C_out, H', W') in x's dtype.
    """
    global _compiled_all_taps_into
    step = _all_taps_into
    if compiled:
        if _compiled_all_taps_into is None:
            _compiled_all_taps_into = torch.compile(
                _all_taps_into, fullgraph=True)
        step = _compiled_all_taps_into
    out_channels, _, kh, kw = weight.shape
    out = x.new_empty(len(x), out_channels, *offset.shape[-2:])
    kernels = _all_tap_kernels(weight)
    starts = _tap_starts(kh, kw, offset.shape[-2:], x.shape[-2:], padding,
                         dilation, x.device)
    for piece in _batch_slices(x, offset, kh * kw * out_channels,
                               chunk_bytes):
        step(x[piece], offset[piece], kernels, bias, starts, out[piece])
    return out


def _batch_slices(x: Tensor, offset: Tensor, out_channels: int,
                  chunk_bytes: int) -> List[slice]:
    """Slices of the batch whose per-tap tensors (x's projection, its
    samples and their gradients: at most ``out_channels`` float32 channels
    of an image) stay under ``chunk_bytes``, one image at least (for
    :func:`_all_taps_sum`, ``out_channels`` counts every tap's)."""
    N, _, H, W = x.shape
    h, w = offset.shape[-2:]
    per_image = max(H * W, h * w) * out_channels * 4
    step = max(1, chunk_bytes // per_image)
    return [slice(start, start + step) for start in range(0, N, step)]


def _chunked_tap_sum(x: Tensor, offset: Tensor, weight: Tensor, padding: int,
                     dilation: int, chunk_bytes: int) -> Tensor:
    """:func:`_tap_sum` in float32 without autograd, over slices of the
    batch whose per-tap tensors stay under ``chunk_bytes``.

    Each tap's projection and samples of a whole video batch (hundreds of
    MB) would be freshly mapped and faulted in, tap after tap; slices
    small enough for malloc's heap reuse the same memory and stay in cache.
    Every slice runs the same batched ops.
    """
    out_channels = weight.shape[0]
    out = x.new_empty(len(x), out_channels, *offset.shape[-2:],
                      dtype=torch.float32)
    for piece in _batch_slices(x, offset, out_channels, chunk_bytes):
        _tap_sum(x[piece], offset[piece], weight, padding, dilation,
                 torch.float32, out=out[piece])
    return out


class _SampledDeformConv2d(torch.autograd.Function):
    """:func:`_tap_sum` in x's dtype (float32/float64) without bias, with a
    backward that accumulates the gradients of every tap in place.

    The forward keeps each tap's projection, as autograd would for
    ``grid_sample``; the backward runs ``grid_sample``'s backward on slices
    of the batch (its input gradient is a zero-filled fresh tensor per
    call) and turns each tap's sampling gradient into the input and weight
    gradients with ``addmm_``/``mm`` into preallocated buffers.
    """

    @staticmethod
    def forward(ctx, x: Tensor, offset: Tensor, weight: Tensor, padding: int,
                dilation: int, chunk_bytes: int) -> Tensor:
        projections = []
        out = _tap_sum(x, offset, weight, padding, dilation, x.dtype,
                       projections)
        ctx.save_for_backward(x, offset, weight, *projections)
        ctx.padding, ctx.dilation = padding, dilation
        ctx.chunk_bytes = chunk_bytes
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, offset, weight, *projections = ctx.saved_tensors
        N, C, H, W = x.shape
        out_channels, _, kh, kw = weight.shape
        h, w = offset.shape[-2:]
        offset = offset.to(x.dtype).reshape(N, kh * kw, 2, h, w)
        pixels = _rows(x)
        kernels = _tap_kernels(weight)
        need_x, need_offset, need_weight = ctx.needs_input_grad[:3]
        grad_pixels = torch.empty_like(pixels) if need_x else None
        grad_kernels = torch.empty_like(kernels) if need_weight else None
        grad_offset = torch.empty_like(offset) if need_offset else None
        # One tap's (N*H*W, C_out) gradient at a time, in channels-last rows.
        grad_proj = torch.empty_like(projections[0])
        grad_rows = grad_proj.view(N, H, W, out_channels)
        pieces = _batch_slices(x, offset, out_channels, ctx.chunk_bytes)
        starts = _tap_starts(kh, kw, (h, w), (H, W), ctx.padding,
                             ctx.dilation, x.device, x.dtype)
        for k in range(kh * kw):
            grid = _tap_grid(offset, k, starts, (H, W))
            projected = projections[k].view(N, H, W,
                                            out_channels).permute(0, 3, 1, 2)
            for piece in pieces:
                grad_sampled, grad_grid = \
                    torch.ops.aten.grid_sampler_2d_backward(
                        grad_out[piece], projected[piece], grid[piece], 0, 0,
                        False, [need_x or need_weight, need_offset])
                if need_offset:
                    # d grid / d offset is 2/W for x and 2/H for y.
                    grad_offset[piece, k, 0] = grad_grid[..., 1] * (2 / H)
                    grad_offset[piece, k, 1] = grad_grid[..., 0] * (2 / W)
                if need_x or need_weight:
                    grad_rows[piece].copy_(grad_sampled.permute(0, 2, 3, 1))
            if not (need_x or need_weight):
                continue
            if need_x:
                if k == 0:
                    torch.mm(grad_proj, kernels[k].t(), out=grad_pixels)
                else:
                    grad_pixels.addmm_(grad_proj, kernels[k].t())
            if need_weight:
                torch.mm(pixels.t(), grad_proj, out=grad_kernels[k])
        grad_x = grad_weight = None
        if need_x:
            grad_x = grad_pixels.view(N, H, W, C).permute(0, 3, 1, 2)
        if need_weight:
            grad_weight = grad_kernels.view(kh, kw, C,
                                            out_channels).permute(3, 2, 0, 1)
        if need_offset:
            grad_offset = grad_offset.flatten(1, 2)
        return grad_x, grad_offset, grad_weight, None, None, None


def deform_conv2d_by_sampling(x: Tensor,
                              offset: Tensor,
                              weight: Tensor,
                              bias: Optional[Tensor] = None,
                              padding: int = 1,
                              dilation: int = 1,
                              chunk_bytes: int = 4 * 2**20,
                              cuda_chunk_bytes: int = 2**28,
                              cuda_impl: str = 'grid_sample') -> Tensor:
    """``torchvision.ops.deform_conv2d`` (stride 1, one offset group, no
    modulation mask) written with ``F.grid_sample``, or on a GPU without
    autograd as one Triton kernel (``cuda_impl='triton'``).

    Zero padding outside the image and the bilinear weights are
    torchvision's. Training in float32 or float64 (autograd on, no autocast,
    no graph capture) runs :class:`_SampledDeformConv2d`; inference on a
    GPU runs ``cuda_impl``; everything else runs the same tap sum with
    autograd's own ops.

    Args:
        x (Tensor): Input (N, C_in, H, W); channels-last saves a copy.
        offset (Tensor): (N, 2*kh*kw, H', W'), (dy, dx) per kernel tap in
            row-major tap order, as torchvision.
        weight (Tensor): (C_out, C_in, kh, kw).
        bias (Tensor, optional): (C_out,).
        padding (int): Zero padding of both sides. Defaults to 1.
        dilation (int): Kernel dilation. Defaults to 1.
        chunk_bytes (int): CPU inference without graph capture runs the
            batch in slices whose per-tap tensors stay under this many bytes
            (one image per slice at least), and so does the sampling
            backward of training. Defaults to 4 MiB, well under glibc's
            largest mmap threshold (32 MiB).
        cuda_chunk_bytes (int): GPU inference (also in CUDA graphs) runs
            every tap at once (:func:`_all_taps_sum`) on slices of the batch
            whose projections of all taps stay under this many bytes (one
            image per slice at least). Defaults to 256 MiB.
        cuda_impl (str): GPU inference runs ``'grid_sample'``, every tap
            in three ops on slices of the batch (:func:`_all_taps_inference`);
            ``'compiled'``, the same slices compiled by ``torch.compile``;
            or ``'triton'``, one kernel that writes nothing but the output
            (:func:`~.deform_conv_kernel.fused_deform_conv2d`, needs Triton;
            its matmuls in TF32 when ``torch.backends.cudnn.allow_tf32``, as
            the 1x1 conv of the other two). Defaults to ``'grid_sample'``.

    Returns:
        Tensor: (N, C_out, H', W') with the output size of a stride-1 conv.
    """
    if cuda_impl not in CUDA_IMPLS:
        raise ValueError(f'cuda_impl must be one of {CUDA_IMPLS}, got '
                         f'{cuda_impl!r}')
    N, _, H, W = x.shape
    _, _, kh, kw = weight.shape
    out_h = H + 2 * padding - dilation * (kh - 1)
    out_w = W + 2 * padding - dilation * (kw - 1)
    if offset.shape != (N, 2 * kh * kw, out_h, out_w):
        raise ValueError(f'offset must have shape ({N}, {2 * kh * kw}, '
                         f'{out_h}, {out_w}), got {tuple(offset.shape)}')
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, offset, weight))
    if (needs_grad and not is_graph_capture()
            and not torch.is_autocast_enabled(x.device.type)
            and x.dtype in (torch.float32, torch.float64)):
        out = _SampledDeformConv2d.apply(x, offset, weight, padding, dilation,
                                         chunk_bytes)
    elif not needs_grad and x.is_cuda and cuda_impl == 'triton':
        # Imported here: Triton is not part of a CPU-only PyTorch.
        try:
            from .deform_conv_kernel import fused_deform_conv2d
        except ImportError as error:
            raise ImportError(
                "cuda_impl='triton' (mask_head.cuda_deform) needs Triton, "
                "which CUDA builds of PyTorch install; use 'grid_sample' "
                f'without it ({error})') from error

        # The kernel gathers each sampled pixel's channels at once.
        x = x.contiguous(memory_format=torch.channels_last)
        return fused_deform_conv2d(x, offset, weight, bias, padding,
                                   dilation, torch.backends.cudnn.allow_tf32)
    elif not needs_grad and x.is_cuda:
        return _all_taps_inference(x, offset, weight, bias, padding,
                                   dilation, cuda_chunk_bytes,
                                   cuda_impl == 'compiled')
    elif not needs_grad and not is_graph_capture():
        out = _chunked_tap_sum(x, offset, weight, padding, dilation,
                               chunk_bytes)
    else:
        # Autograd's own ops; sampled in float32, also under autocast.
        out = _tap_sum(x, offset, weight, padding, dilation, torch.float32)
    if bias is not None:
        out = out + bias.to(out.dtype)[:, None, None]
    return out.to(x.dtype)
