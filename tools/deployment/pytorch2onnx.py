"""Export one clip of a TT-SRN model to ONNX, and check it with onnxruntime.

Example (the quickstart model, 4 frames of 96 x 128)::

    python tools/deployment/pytorch2onnx.py configs/ttsrn/ttsrn_synthetic.py \
        work_dirs/ttsrn_synthetic/epoch_35.pth --out ttsrn_synthetic.onnx \
        --verify

The graph takes the data preprocessor's output for one clip, ``inputs``
(1, T, 3, H, W) and ``pad_mask`` (1, T, H, W), and gives the last decoder
layer's ``cls_scores``, ``bbox_preds`` and ``mask_preds`` (see
:mod:`mmttsrn.models.vis.onnx_export`). ``--verify`` runs the file with
onnxruntime on a random clip, prints the largest absolute difference of each
output against PyTorch and exits with status 1 if one is above
``--tolerance``. Videos run through the file with
``mmttsrn.apis.inference_video_onnx``.
"""
import argparse
import os.path as osp
import sys
import time
from typing import List, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction

from mmttsrn.apis import init_model
from mmttsrn.models.vis.onnx_export import (compare_with_pytorch, export_onnx,
                                            padded_size)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export one clip of a TT-SRN model to ONNX')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='output .onnx file')
    parser.add_argument(
        '--frames',
        type=int,
        help='frames T of the clip (default: the model\'s clip length); '
        'the head is built for its own T, so this must match it')
    parser.add_argument(
        '--size',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='frame height and width before padding (default: the size the '
        'test pipeline\'s Resize gives); the file takes this size padded to '
        'the data preprocessor\'s size divisor, and only that size')
    parser.add_argument(
        '--opset', type=int, default=19, help='ONNX opset version')
    parser.add_argument(
        '--verify',
        action='store_true',
        help='compare onnxruntime with PyTorch on a random clip')
    parser.add_argument(
        '--tolerance',
        type=float,
        default=1e-3,
        help='largest absolute difference --verify accepts')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value')
    return parser.parse_args(argv)


def _fixed_resize(transforms: Sequence[dict]) -> Optional[Tuple[int, int]]:
    """(H, W) of the first ``Resize`` with ``keep_ratio=False`` in a
    (possibly nested) pipeline config, else None."""
    for transform in transforms:
        if str(transform.get('type', '')).split('.')[-1] == 'Resize' and \
                not transform.get('keep_ratio', False):
            width, height = transform['scale']
            return height, width
        found = _fixed_resize(transform.get('transforms', []))
        if found is not None:
            return found
    return None


def frame_size(cfg: Config, size: Optional[Sequence[int]]) -> Tuple[int, int]:
    """``--size``, else the test pipeline's fixed Resize size."""
    if size is not None:
        if min(size) < 1:
            raise ValueError(f'--size must be positive, got {list(size)}')
        return tuple(size)
    pipeline = cfg.get('test_dataloader', {}).get('dataset',
                                                  {}).get('pipeline', [])
    found = _fixed_resize(pipeline)
    if found is None:
        raise ValueError('the test pipeline has no Resize to a fixed size '
                         '(keep_ratio=False); pass --size H W')
    return found


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    for kind, path in (('config', args.config), ('checkpoint',
                                                 args.checkpoint)):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{kind} file {path} does not exist')
    model = init_model(
        args.config, args.checkpoint, cfg_options=args.cfg_options)
    if args.frames is not None and args.frames != model.num_frames:
        raise ValueError(f'the model is built for clips of {model.num_frames}'
                         f' frames, got --frames {args.frames}; change '
                         'num_frames in the config instead')
    size = frame_size(model.cfg, args.size)
    pad_size = padded_size(model, size)

    start = time.perf_counter()
    info = export_onnx(model, args.out, size, args.opset)
    elapsed = time.perf_counter() - start
    print(f'exported {args.out} in {elapsed:.1f} s: clip of '
          f'{model.num_frames} frames of {size[0]} x {size[1]} (padded to '
          f'{pad_size[0]} x {pad_size[1]}), opset {args.opset}, '
          f'{info["bool_where"]} bool Where nodes rewritten')
    if not args.verify:
        return
    diffs = compare_with_pytorch(model, args.out, size)
    print('max abs difference onnxruntime vs PyTorch: ' +
          ', '.join(f'{name} {diff:.3g}' for name, diff in diffs.items()))
    worst = max(diffs.values())
    if worst > args.tolerance:
        sys.exit(f'verify failed: {worst:.3g} > tolerance {args.tolerance}')
    print(f'verify passed (tolerance {args.tolerance})')


if __name__ == '__main__':
    main()
