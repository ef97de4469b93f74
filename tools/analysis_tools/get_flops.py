"""Count the parameters and FLOPs of a TT-SRN model on one clip.

Example (the paper's setting, 36 frames of 300 x 540)::

    python tools/analysis_tools/get_flops.py configs/ttsrn/ttsrn_yvis.py \
        --frames 36 --size 300 540

The clip is padded to the data preprocessor's size divisor, as in testing,
and run once through ``model._forward`` under mmengine's JIT FLOP counter.
FLOPs are counted as in fvcore/mmengine: one multiply-add is one FLOP.
Fused attention (``scaled_dot_product_attention``) and the deformable conv
are counted by the handles below (their matrix products only: the softmax
and the deformable conv's bilinear sampling are not); element-wise ops such
as activations and normalisations are not counted by mmengine, and any other
op it skips is listed in the output.
"""
import argparse
from collections import Counter
from typing import Any, List, Optional

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape
from mmengine.analysis.print_helper import _format_size

from mmttsrn.apis import init_model


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Multiply-adds of ``scaled_dot_product_attention``.

    q (B, H, L, E) @ k^T (B, H, E, S) and attn (B, H, L, S) @ v (B, H, S, Ev).
    """
    q_shape, k_shape, v_shape = (get_shape(v) for v in inputs[:3])
    *batch, length, embed = q_shape
    num_keys, value_dims = k_shape[-2], v_shape[-1]
    batch_size = 1
    for size in batch:
        batch_size *= size
    return batch_size * length * num_keys * (embed + value_dims)


def deform_conv_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Multiply-adds of torchvision's ``deform_conv2d`` convolution part."""
    weight_shape = get_shape(inputs[1])  # (C_out, C_in / groups, kh, kw)
    out_shape = get_shape(outputs[0])  # (N, C_out, H_out, W_out)
    per_output = weight_shape[1] * weight_shape[2] * weight_shape[3]
    num_outputs = 1
    for size in out_shape:
        num_outputs *= size
    return num_outputs * per_output


class ClipForward(nn.Module):
    """``model._forward`` on a clip, returning a tuple for the tracer."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> tuple:
        outs = self.model._forward(inputs)
        return tuple(outs[k] for k in sorted(outs))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Parameters and FLOPs of a TT-SRN model on one clip')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--frames',
        type=int,
        help='frames T of the clip (default: the model\'s clip length); '
        'the head is built for its own T, so this must match it')
    parser.add_argument(
        '--size',
        type=int,
        nargs=2,
        default=[300, 540],
        metavar=('H', 'W'),
        help='frame height and width before padding')
    parser.add_argument(
        '--device', default='cpu', help='device, e.g. cpu or cuda:0')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    model = init_model(args.config, device=args.device)
    num_frames = args.frames or model.num_frames
    if num_frames != model.num_frames:
        raise ValueError(f'the model is built for clips of {model.num_frames}'
                         f' frames, got --frames {num_frames}; change '
                         'num_frames in the config instead')
    height, width = args.size
    divisor = getattr(model.data_preprocessor, 'pad_size_divisor', 1) or 1
    pad_h = -(-height // divisor) * divisor
    pad_w = -(-width // divisor) * divisor
    inputs = torch.randn(1, num_frames, 3, pad_h, pad_w, device=args.device)

    analyzer = FlopAnalyzer(ClipForward(model), (inputs, ))
    analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit,
                           'torchvision::deform_conv2d', deform_conv_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        flops = analyzer.total()
        by_module = analyzer.by_module()
    params = parameter_count(model)

    split = '=' * 60
    print(split)
    print(f'Clip: {num_frames} frames of {height} x {width} '
          f'(padded to {pad_h} x {pad_w})')
    print(f'Params: {_format_size(params[""])} ({params[""]:,})')
    flops = int(flops)
    print(f'FLOPs: {_format_size(flops)} ({flops:,} multiply-adds)')
    for name in ('backbone', 'track_head.transformer', 'track_head.mask_head',
                 'track_head'):
        print(f'  {name}: {_format_size(by_module[f"model.{name}"])} FLOPs, '
              f'{_format_size(params[name])} params')
    skipped = Counter(analyzer.unsupported_ops())
    if skipped:
        print('Not counted (op: calls): ' +
              ', '.join(f'{op}: {n}' for op, n in sorted(skipped.items())))
    print(split)
    print('Note: attention and the deformable conv are counted by this '
          "script's handles (matrix products only); softmax, activations, "
          'normalisations and the bilinear sampling of the deformable conv '
          'are not, so the true count is somewhat higher.')


if __name__ == '__main__':
    main()
