"""Draw the ground truth of dataset clips as the model sees them.

Each sample goes through the phase's pipeline (for ``train``: the clip
sampling, resizing and flips), and its frames are drawn in a grid with every
gt instance's mask, box, category and instance id; an instance has the same
colour in every frame. Example::

    python tools/analysis_tools/browse_dataset.py \
        configs/ttsrn/ttsrn_synthetic.py --output-dir browse --not-show

writes ``browse/<phase>_<index>_<video_id>.png``.
"""
import argparse
import math
import os
import os.path as osp
from typing import List, Optional

import mmcv
import numpy as np
from mmdet.registry import DATASETS
from mmdet.structures import TrackDataSample
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.utils import ProgressBar

from mmttsrn.utils import sync_num_frames
from mmttsrn.visualization import TrackInstanceVisualizer


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Draw the ground truth of dataset clips')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--output-dir', help='write one PNG per clip into this folder')
    parser.add_argument(
        '--not-show', action='store_true', help='do not open a window')
    parser.add_argument(
        '--phase',
        default='train',
        choices=['train', 'val', 'test'],
        help='which dataloader\'s dataset and pipeline to use')
    parser.add_argument(
        '--num', type=int, default=5, help='number of clips to draw')
    parser.add_argument(
        '--cols', type=int, default=6, help='frames per row of a grid')
    parser.add_argument(
        '--show-interval',
        type=float,
        default=2,
        help='seconds a window stays open')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. '
        'train_dataloader.dataset.data_root=data/other/')
    return parser.parse_args(argv)


def _frame_image(inputs: np.ndarray, size: tuple) -> np.ndarray:
    """One frame (C, H, W) BGR -> (h, w, 3) RGB at ``size``."""
    img = mmcv.bgr2rgb(inputs.transpose(1, 2, 0).astype(np.uint8))
    if img.shape[:2] != size:
        img = mmcv.imresize(img, size[::-1])
    return img


def _annotation_size(clip: TrackDataSample) -> Optional[tuple]:
    """(h, w) of the gt masks, which test pipelines keep at the original
    size while the image is resized."""
    for frame in clip.video_data_samples:
        masks = frame.get('gt_instances', {}).get('masks')
        if masks is not None and len(masks):
            return masks.height, masks.width
    return None


def draw_clip(visualizer: TrackInstanceVisualizer, inputs: np.ndarray,
              clip: TrackDataSample, cols: int) -> np.ndarray:
    """Draw every frame of a clip and tile them into a grid.

    Args:
        visualizer (TrackInstanceVisualizer): Drawer with ``dataset_meta``.
        inputs (np.ndarray): Packed frames (T, C, H, W), BGR.
        clip (TrackDataSample): The clip's T frame samples with
            ``gt_instances``.
        cols (int): Frames per row.

    Returns:
        np.ndarray: The RGB grid image.
    """
    size = _annotation_size(clip) or tuple(inputs.shape[-2:])
    tiles = []
    for frame_inputs, frame in zip(inputs, clip.video_data_samples):
        img = _frame_image(frame_inputs, size)
        if 'gt_instances' in frame and len(frame.gt_instances):
            img = visualizer._draw_instances(img, frame.gt_instances)
        tiles.append(img)
    cols = min(cols, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    tiles += [np.zeros_like(tiles[0])] * (rows * cols - len(tiles))
    return np.concatenate([
        np.concatenate(tiles[r * cols:(r + 1) * cols], axis=1)
        for r in range(rows)
    ])


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file {args.config} does not exist')
    if args.not_show and args.output_dir is None:
        raise ValueError('nothing to do: give --output-dir or drop '
                         '--not-show')
    if args.num < 1 or args.cols < 1:
        raise ValueError('--num and --cols must be >= 1')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    sync_num_frames(cfg)
    init_default_scope(cfg.get('default_scope', 'mmdet'))

    key = f'{args.phase}_dataloader'
    if key not in cfg:
        raise KeyError(f'the config has no {key}')
    dataset = DATASETS.build(cfg[key].dataset)
    visualizer = TrackInstanceVisualizer(
        name='browse_dataset', line_width=2, alpha=0.5)
    visualizer.dataset_meta = dataset.metainfo
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)

    num = min(args.num, len(dataset))
    progress = ProgressBar(num)
    for index in range(num):
        item = dataset[index]
        clip = item['data_samples']
        grid = draw_clip(visualizer, item['inputs'].numpy(), clip, args.cols)
        video_id = clip.video_data_samples[0].metainfo.get('video_id', index)
        name = f'{args.phase}_{index:04d}_{video_id}'
        if args.output_dir:
            mmcv.imwrite(
                mmcv.rgb2bgr(grid), osp.join(args.output_dir, f'{name}.png'))
        if not args.not_show:
            visualizer.show(grid, win_name=name, wait_time=args.show_interval)
        progress.update()
    if args.output_dir:
        print(f'\n{num} clips drawn into {args.output_dir}')


if __name__ == '__main__':
    main()
