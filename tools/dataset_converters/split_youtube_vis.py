"""Split an annotated YouTube-VIS file by video into train and val subsets.

The server's valid/test splits have no annotations, so a local AP needs a
held-out part of train.json::

    python tools/dataset_converters/split_youtube_vis.py \\
        data/youtube_vis_2019/annotations/train.json --val-ratio 0.1 --seed 0

writes ``train_sub.json`` and ``val_sub.json`` next to the input (or in
``--out-dir``), in the same official format, with the original video and
annotation ids. The split is seeded and category-balanced: categories are
visited from the rarest, and each sends about ``val_ratio`` of its videos
(always keeping one for training) to val; videos without annotations are
split in the same ratio. A file that is not valid JSON, or whose
annotations name videos it does not list, is refused with the file named:
nothing is dropped silently.
"""
import argparse
import json
import os
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Optional, Set, Tuple

import numpy as np


def _val_count(num: int, val_ratio: float) -> int:
    """Round ``num * val_ratio`` half up, keeping one item for training."""
    return min(int(np.floor(num * val_ratio + 0.5)), max(num - 1, 0))


def _check_records(ann: dict) -> None:
    """Check the keys the split reads; refuse annotations of unknown videos.
    """
    for key in ('videos', 'annotations'):
        if not isinstance(ann[key], list):
            raise ValueError(f"'{key}' must be a list")
    for i, video in enumerate(ann['videos']):
        if not isinstance(video, dict) or 'id' not in video:
            raise ValueError(f"video #{i} has no 'id'")
    video_ids = {video['id'] for video in ann['videos']}
    unknown = []
    for i, ann_info in enumerate(ann['annotations']):
        if not isinstance(ann_info, dict) or not {
                'video_id', 'category_id'
        } <= set(ann_info):
            raise ValueError(f"annotation #{i} needs 'video_id' and "
                             "'category_id'")
        if ann_info['video_id'] not in video_ids:
            unknown.append(ann_info)
    if unknown:
        ids = [a.get('id', '?') for a in unknown[:5]]
        videos = sorted({a['video_id'] for a in unknown}, key=str)[:5]
        raise ValueError(
            f'{len(unknown)} annotations refer to videos that are not in '
            f"'videos' (annotation ids {ids}..., video ids {videos}...); "
            'they would be dropped from both outputs: fix or remove them')


def split_video_ids(ann: dict,
                    val_ratio: float,
                    seed: int = 0) -> Tuple[List[int], List[int]]:
    """Choose the train and val videos of an annotated YouTube-VIS dict.

    Args:
        ann (dict): The official JSON content (``videos``, ``annotations``).
        val_ratio (float): Wanted fraction of each category's videos in val,
            in (0, 1).
        seed (int): Random seed. Defaults to 0.

    Returns:
        tuple[list[int], list[int]]: Train and val video ids, in file order.
    """
    if not 0 < val_ratio < 1:
        raise ValueError(f'val_ratio must be in (0, 1), got {val_ratio}')
    for key in ('videos', 'annotations'):
        if key not in ann:
            raise ValueError(
                f"missing '{key}': only an annotated file (such as the "
                'official train.json) can be split')
    _check_records(ann)
    video_ids = [video['id'] for video in ann['videos']]
    videos_of_cat: Dict[int, List[int]] = defaultdict(list)
    cats_of_video: Dict[int, Set[int]] = defaultdict(set)
    for ann_info in ann['annotations']:
        video_id, cat_id = ann_info['video_id'], ann_info['category_id']
        if cat_id not in cats_of_video[video_id]:
            cats_of_video[video_id].add(cat_id)
            videos_of_cat[cat_id].append(video_id)
    rng = np.random.default_rng(seed)
    in_val: Dict[int, bool] = {}
    groups = [
        videos_of_cat[cat] for cat in sorted(
            videos_of_cat, key=lambda c: (len(videos_of_cat[c]), c))
    ]
    groups.append([v for v in video_ids if v not in cats_of_video])
    for group in groups:
        # Rarest categories first, so their quota is met before common
        # categories' videos (which often contain them) are placed.
        need = _val_count(len(group), val_ratio) - sum(
            in_val.get(v, False) for v in group)
        free = [
            group[i] for i in rng.permutation(len(group))
            if group[i] not in in_val
        ]
        for video_id in free:
            in_val[video_id] = need > 0
            need -= 1
    train = [v for v in video_ids if not in_val[v]]
    val = [v for v in video_ids if in_val[v]]
    return train, val


def subset(ann: dict, video_ids: List[int]) -> dict:
    """The official-format dict restricted to some videos.

    Args:
        ann (dict): The official JSON content.
        video_ids (list[int]): Videos to keep.

    Returns:
        dict: Same keys as ``ann`` (categories, info, ... kept as they are).
    """
    keep = set(video_ids)
    out = dict(ann)
    out['videos'] = [v for v in ann['videos'] if v['id'] in keep]
    out['annotations'] = [
        a for a in ann['annotations'] if a['video_id'] in keep
    ]
    return out


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Split an annotated YouTube-VIS JSON by video into '
        'category-balanced train and val subsets.')
    parser.add_argument('ann_file', help='annotated JSON, e.g. train.json')
    parser.add_argument(
        '--val-ratio', type=float, default=0.1, help='fraction for val')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--out-dir', help='output folder (default: next to ann_file)')
    parser.add_argument(
        '--train-name', default='train_sub.json', help='train output name')
    parser.add_argument(
        '--val-name', default='val_sub.json', help='val output name')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace existing outputs (never the input)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    out_dir = args.out_dir or osp.dirname(osp.abspath(args.ann_file))
    outputs = [
        osp.join(out_dir, args.train_name),
        osp.join(out_dir, args.val_name)
    ]
    if osp.realpath(outputs[0]) == osp.realpath(outputs[1]):
        raise SystemExit('--train-name and --val-name must differ')
    for path in outputs:
        if osp.realpath(path) == osp.realpath(args.ann_file):
            raise SystemExit(f'refusing to overwrite the input {path}')
        if osp.exists(path) and not args.overwrite:
            raise SystemExit(f'{path} exists; pass --overwrite to replace it')
    if not osp.isfile(args.ann_file):
        raise SystemExit(f'annotation file {args.ann_file} does not exist')
    try:
        with open(args.ann_file, encoding='utf-8') as f:
            ann = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SystemExit(f'{args.ann_file} is not valid JSON: {e}')
    if not isinstance(ann, dict):
        raise SystemExit(f'{args.ann_file} must hold a JSON object with '
                         f"'videos' and 'annotations', got a "
                         f'{type(ann).__name__}')
    try:
        train_ids, val_ids = split_video_ids(ann, args.val_ratio, args.seed)
    except ValueError as e:
        raise SystemExit(f'{args.ann_file}: {e}')
    os.makedirs(out_dir, exist_ok=True)
    for path, ids in zip(outputs, (train_ids, val_ids)):
        part = subset(ann, ids)
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(part, f)
        print(f'{path}: {len(part["videos"])} videos, '
              f'{len(part["annotations"])} annotations')


if __name__ == '__main__':
    main()
