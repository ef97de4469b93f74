"""Time the mask head's deformable conv alone, in each of its ways.

On a GPU: torchvision's ``deform_conv2d`` and the three ways of
``deform_conv2d_by_sampling`` for inference (``cuda_impl``: ``grid_sample``,
``compiled``, ``triton``), and the Triton kernel called on its own
(``triton_nchw``: on x as the mask head gives it on a GPU, NCHW;
``triton_cl``: on x made channels-last before the timing), which splits
``triton``'s time into the kernel and the channels-last copy it makes
first; on the CPU: torchvision's and the sampled CPU path (``sampled``).
Without autograd, in fp32 and under bf16 autocast (bf16 input and offsets,
as the mask head gives them). One JSON line per (way,
dtype): median milliseconds, peak memory above the inputs, and the largest
difference from torchvision's float32 output (TF32 off), absolute and
relative to that output's largest value; or the ``error`` of a way that
fails, and the next way runs.

Defaults: the paper config's conv, 360 instance-frames (10 instances x 36
frames) of 48 channels at 80 x 136 to 24 channels, 3x3::

    python tools/analysis_tools/deform_conv_benchmark.py --device cuda
"""
import argparse
import contextlib
import json
import statistics
import time

import torch
from torchvision.ops import deform_conv2d

from mmttsrn.models.layers import deform_conv2d_by_sampling

# The Triton kernel alone, on x in this memory format (made before timing).
KERNEL_WAYS = dict(
    triton_nchw=torch.contiguous_format, triton_cl=torch.channels_last)
GPU_WAYS = ('torchvision', 'grid_sample', 'compiled', 'triton', *KERNEL_WAYS)
CPU_WAYS = ('torchvision', 'sampled')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch', type=int, default=360)
    parser.add_argument('--channels', type=int, nargs=2, default=(48, 24),
                        metavar=('IN', 'OUT'))
    parser.add_argument('--size', type=int, nargs=2, default=(80, 136),
                        metavar=('H', 'W'))
    parser.add_argument('--dtypes', nargs='+', choices=('fp32', 'bf16'),
                        default=['fp32', 'bf16'])
    parser.add_argument('--ways', nargs='+',
                        help=f'default: {GPU_WAYS} on a GPU, {CPU_WAYS} on '
                        'the CPU')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _no_tf32():
    """float32 matmuls and convs in float32, not TF32."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


def _conv(way: str):
    if way == 'torchvision':
        # In float32 and back, as its CUDA autocast wrapper does (its CPU
        # kernel has no bf16).
        return lambda x, offset, weight, bias: deform_conv2d(
            x.float(), offset.float(), weight, bias, padding=1).to(x.dtype)
    if way in KERNEL_WAYS:
        # Imported here: Triton is not part of a CPU-only PyTorch.
        from mmttsrn.models.layers.deform_conv_kernel import \
            fused_deform_conv2d
        return lambda x, offset, weight, bias: fused_deform_conv2d(
            x, offset, weight, bias, 1, 1, torch.backends.cudnn.allow_tf32)
    impl = dict(sampled='grid_sample').get(way, way)
    return lambda x, offset, weight, bias: deform_conv2d_by_sampling(
        x, offset, weight, bias, cuda_impl=impl)


def _time(conv, inputs: tuple, low: bool, device: torch.device,
          warmup: int, repeats: int) -> tuple:
    """(seconds of each repeat, the last output, peak bytes above what was
    allocated before the repeats or None on the CPU)."""
    with torch.no_grad(), torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=low):
        for _ in range(warmup):
            out = conv(*inputs)
        _sync(device)
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = conv(*inputs)
            _sync(device)
            times.append(time.perf_counter() - start)
    peak = None
    if device.type == 'cuda':
        peak = torch.cuda.max_memory_allocated(device) - before
    return times, out, peak


def main(argv=None) -> list:
    args = parse_args(argv)
    device = torch.device(args.device)
    ways = args.ways or (GPU_WAYS if device.type == 'cuda' else CPU_WAYS)
    allowed = GPU_WAYS if device.type == 'cuda' else CPU_WAYS
    unknown = [way for way in ways if way not in allowed]
    if unknown:
        raise SystemExit(f'--ways {unknown}: on {device.type} the ways are '
                         f'{allowed}')
    torch.manual_seed(args.seed)
    (c_in, c_out), (h, w) = args.channels, args.size
    x = torch.randn(args.batch, c_in, h, w, device=device)
    # Offsets of a few pixels, as a trained offset conv gives.
    offset = 2 * torch.randn(args.batch, 18, h, w, device=device)
    weight = torch.randn(c_out, c_in, 3, 3, device=device) / (9 * c_in)**0.5
    bias = torch.randn(c_out, device=device)
    with torch.no_grad(), _no_tf32():
        reference = deform_conv2d(x, offset, weight, bias, padding=1)
    scale = reference.abs().max().item()
    records = []
    for dtype in args.dtypes:
        low = dtype == 'bf16'
        inputs = (x.bfloat16(), offset.bfloat16()) if low else (x, offset)
        for way in ways:
            record = dict(way=way, dtype=dtype, device=str(device))
            x_in = inputs[0].contiguous(
                memory_format=KERNEL_WAYS.get(way, torch.contiguous_format))
            try:
                times, out, peak = _time(_conv(way),
                                         (x_in, inputs[1], weight, bias), low,
                                         device, args.warmup, args.repeats)
            except Exception as error:  # the other ways still run
                record['error'] = f'{type(error).__name__}: {error}'[:500]
            else:
                diff = (out.float() - reference).abs().max().item()
                record.update(
                    ms=1e3 * statistics.median(times),
                    ms_min=1e3 * min(times),
                    out_dtype=str(out.dtype).replace('torch.', ''),
                    max_abs_diff=diff,
                    max_rel_diff=diff / scale)
                if peak is not None:
                    record['peak_mb'] = peak / 2**20
                del out
            record.update(
                shape=[args.batch, c_in, h, w, c_out],
                repeats=args.repeats,
                torch=torch.__version__)
            if device.type == 'cuda':
                record['device_name'] = torch.cuda.get_device_name(device)
            print(json.dumps(record), flush=True)
            records.append(record)
    return records


if __name__ == '__main__':
    main()
