"""Convert videos with per-frame instance-id PNG masks to YouTube-VIS JSON.

Input (DAVIS-2017 style)::

    ROOT/JPEGImages/<video>/<frame>.jpg
    ROOT/Annotations/<video>/<frame>.png   pixel = instance id, 0 = background
                                           (grey-level or palette PNG)
    FILE: {"<video>": {"<instance id>": "<category name>", ...}, ...}

Example::

    python tools/dataset_converters/masks_to_youtube_vis.py data/my_vis \\
        --categories data/my_vis/categories.json \\
        --out data/my_vis/annotations/all.json

writes the official YouTube-VIS format: ``videos`` (ids from 1 in sorted
folder order, ``file_names`` ``<video>/<frame>.jpg`` relative to
``JPEGImages``), ``categories`` (ids from 1 in sorted name order) and one
annotation per (video, instance id) with per-frame ``segmentations`` (RLE,
str counts), ``bboxes`` ([x, y, w, h]) and ``areas``, null in the frames
where the instance is absent. Decoding the RLEs gives the PNG masks back.

Every frame needs its mask and every mask its frame, all of a video's frames
and masks must have one size, and every instance id needs a category; else
the tool stops with an error naming the file, and writes nothing. The JSON
is written to a temporary file and renamed, so it is never half-written.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

FRAME_EXTENSIONS = ('.jpg', '.jpeg')


class ConversionError(ValueError):
    """Bad input; the message names the file or record."""


def _list_dir(path: str, extensions: Tuple[str, ...]) -> Dict[str, str]:
    """File stem -> file name of the files with ``extensions`` in ``path``."""
    names = {}
    for name in sorted(os.listdir(path)):
        stem, ext = osp.splitext(name)
        if ext.lower() in extensions:
            if stem in names:
                raise ConversionError(
                    f"{path}: both '{names[stem]}' and '{name}' are "
                    f"frame '{stem}'")
            names[stem] = name
    return names


def read_mask(path: str) -> np.ndarray:
    """Read an instance-id PNG.

    Args:
        path (str): A grey-level or palette PNG (palette index = id).

    Returns:
        np.ndarray: Instance ids of shape (H, W), int64.
    """
    try:
        with Image.open(path) as img:
            if img.mode not in ('P', 'L', 'I', 'I;16', '1'):
                raise ConversionError(
                    f'{path}: mode {img.mode} PNG; masks must be palette or '
                    'single-channel PNGs whose pixel values are instance ids')
            return np.array(img).astype(np.int64)
    except ConversionError:
        raise
    except Exception as e:  # PIL raises many error types
        raise ConversionError(f'{path}: cannot read the mask ({e})') from e


def _frame_size(path: str) -> Tuple[int, int]:
    """(height, width) of an image from its header."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception as e:  # PIL raises many error types
        raise ConversionError(f'{path}: cannot read the frame ({e})') from e
    return height, width


def _encode(mask: np.ndarray) -> dict:
    """RLE with str counts of a bool (H, W) mask."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    return rle


def _convert_video(root: str, video: str,
                   categories: Dict[str, str]) -> Tuple[dict, Dict]:
    """Read one video's frames and masks.

    Returns:
        tuple: The video record (without id) and, per instance id, a dict
        of its category name and per-frame RLEs (None where absent).
    """
    frame_dir = osp.join(root, 'JPEGImages', video)
    mask_dir = osp.join(root, 'Annotations', video)
    if not osp.isdir(mask_dir):
        raise ConversionError(f'{mask_dir}: missing; every video of '
                              f'{osp.join(root, "JPEGImages")} needs its '
                              'folder of masks')
    frames = _list_dir(frame_dir, FRAME_EXTENSIONS)
    masks = _list_dir(mask_dir, ('.png', ))
    if not frames:
        raise ConversionError(f'{frame_dir}: no .jpg frames')
    missing = [stem for stem in frames if stem not in masks]
    if missing:
        raise ConversionError(
            f'{mask_dir}: no mask for frames {missing[:5]}'
            f'{" ..." if len(missing) > 5 else ""} (each '
            f'JPEGImages/{video}/<frame>.jpg needs '
            f'Annotations/{video}/<frame>.png)')
    orphans = [masks[stem] for stem in masks if stem not in frames]
    if orphans:
        raise ConversionError(f'{mask_dir}: masks without a frame in '
                              f'{frame_dir}: {orphans[:5]}')
    size = None
    instances: Dict[int, dict] = {}
    stems = list(frames)
    for t, stem in enumerate(stems):
        frame_path = osp.join(frame_dir, frames[stem])
        mask_path = osp.join(mask_dir, masks[stem])
        frame_size = _frame_size(frame_path)
        if size is None:
            size = frame_size
        elif frame_size != size:
            raise ConversionError(
                f'{frame_path}: {frame_size[0]}x{frame_size[1]} (h x w), '
                f'but the first frame of video {video!r} is '
                f'{size[0]}x{size[1]}')
        ids = read_mask(mask_path)
        if ids.shape != size:
            raise ConversionError(
                f'{mask_path}: {ids.shape[0]}x{ids.shape[1]} (h x w), but '
                f'its frame is {size[0]}x{size[1]}')
        for instance_id in np.unique(ids):
            if instance_id == 0:
                continue
            name = categories.get(str(instance_id))
            if name is None:
                raise ConversionError(
                    f'{mask_path}: instance id {instance_id} has no category '
                    f'for video {video!r} in the categories file (it has '
                    f'ids {sorted(categories, key=_id_order)})')
            instance = instances.setdefault(
                int(instance_id),
                dict(category=name, rles=[None] * len(stems)))
            instance['rles'][t] = _encode(ids == instance_id)
    video_record = dict(
        height=size[0],
        width=size[1],
        length=len(stems),
        file_names=[f'{video}/{frames[stem]}' for stem in stems])
    return video_record, instances


def _id_order(key: str):
    return (0, int(key)) if key.isdigit() else (1, key)


def load_categories(path: str) -> Dict[str, Dict[str, str]]:
    """Read and check ``{video: {instance id: category name}}``."""
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except FileNotFoundError as e:
        raise ConversionError(f'{path}: categories file not found') from e
    except json.JSONDecodeError as e:
        raise ConversionError(f'{path}: not valid JSON ({e})') from e
    if not isinstance(data, dict):
        raise ConversionError(
            f'{path}: must hold {{"<video>": {{"<instance id>": '
            f'"<category>"}}}}, got a {type(data).__name__}')
    for video, ids in data.items():
        if not isinstance(ids, dict):
            raise ConversionError(
                f'{path}: video {video!r} must map instance ids to '
                f'category names, got a {type(ids).__name__}')
        for key, name in ids.items():
            if not (key.isdigit() and int(key) > 0):
                raise ConversionError(
                    f'{path}: video {video!r}: instance id {key!r} is not '
                    'a positive integer')
            if not isinstance(name, str) or not name:
                raise ConversionError(
                    f'{path}: video {video!r}, instance {key}: category '
                    f'must be a non-empty string, got {name!r}')
        # '01' and '1' would both name pixel value 1.
        normalised = {str(int(key)): name for key, name in ids.items()}
        if len(normalised) != len(ids):
            raise ConversionError(
                f'{path}: video {video!r} lists an instance id twice')
        data[video] = normalised
    return data


def convert(root: str, categories_file: str) -> dict:
    """Build the YouTube-VIS dict of a DAVIS-style folder.

    Args:
        root (str): Folder with ``JPEGImages/`` and ``Annotations/``.
        categories_file (str): JSON ``{video: {instance id: category}}``.

    Returns:
        dict: ``info``, ``licenses``, ``videos``, ``categories`` and
        ``annotations`` in the official format.
    """
    categories = load_categories(categories_file)
    frame_root = osp.join(root, 'JPEGImages')
    mask_root = osp.join(root, 'Annotations')
    for folder in (frame_root, mask_root):
        if not osp.isdir(folder):
            raise ConversionError(f'{folder}: folder not found')
    videos = sorted(
        d for d in os.listdir(frame_root)
        if osp.isdir(osp.join(frame_root, d)))
    if not videos:
        raise ConversionError(f'{frame_root}: no video folders')
    extra = sorted(
        d for d in os.listdir(mask_root)
        if osp.isdir(osp.join(mask_root, d)) and d not in videos)
    if extra:
        raise ConversionError(
            f'{mask_root}: mask folders without frames in {frame_root}: '
            f'{extra[:5]}')
    unknown = sorted(set(categories) - set(videos))
    if unknown:
        raise ConversionError(f'{categories_file}: videos {unknown[:5]} are '
                              f'not folders of {frame_root}')
    converted = []
    for video in videos:
        if video not in categories:
            raise ConversionError(
                f'{categories_file}: no entry for video {video!r} '
                '(give {"<instance id>": "<category>"} for it, {} if it '
                'has no instances)')
        converted.append(_convert_video(root, video, categories[video]))
    names = sorted({
        instance['category']
        for _, instances in converted for instance in instances.values()
    })
    cat_ids = {name: i + 1 for i, name in enumerate(names)}
    video_records, annotations = [], []
    for video_id, (record, instances) in enumerate(converted, 1):
        video_records.append(dict(id=video_id, **record))
        for instance_id in sorted(instances):
            rles = instances[instance_id]['rles']
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    video_id=video_id,
                    category_id=cat_ids[instances[instance_id]['category']],
                    segmentations=rles,
                    bboxes=[
                        None if rle is None else
                        mask_utils.toBbox(rle).tolist() for rle in rles
                    ],
                    areas=[
                        None if rle is None else float(mask_utils.area(rle))
                        for rle in rles
                    ],
                    iscrowd=0,
                    width=record['width'],
                    height=record['height'],
                    length=record['length']))
    return dict(
        info=dict(description=f'converted from {root} by '
                  'masks_to_youtube_vis.py'),
        licenses=[],
        videos=video_records,
        categories=[dict(id=cat_ids[name], name=name) for name in names],
        annotations=annotations)


def write_json_atomic(data: dict, path: str) -> None:
    """Write JSON next to ``path`` under a temporary name, then rename it."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.tmp{os.getpid()}')
    try:
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(data, f)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert DAVIS-style instance-id PNG masks to the '
        'official YouTube-VIS JSON')
    parser.add_argument(
        'root',
        help='folder with JPEGImages/<video>/ and Annotations/<video>/')
    parser.add_argument(
        '--categories',
        required=True,
        help='JSON {"<video>": {"<instance id>": "<category name>"}}')
    parser.add_argument('--out', required=True, help='JSON file to write')
    parser.add_argument(
        '--overwrite', action='store_true', help='replace an existing --out')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if osp.exists(args.out) and not args.overwrite:
        sys.exit(f'{args.out} exists; pass --overwrite to replace it')
    try:
        data = convert(args.root, args.categories)
    except ConversionError as e:
        sys.exit(f'error: {e}')
    write_json_atomic(data, args.out)
    num_frames = sum(v['length'] for v in data['videos'])
    print(f"wrote {args.out}: {len(data['videos'])} videos, {num_frames} "
          f"frames, {len(data['annotations'])} instances, "
          f"{len(data['categories'])} categories "
          f"({', '.join(c['name'] for c in data['categories'])})")


if __name__ == '__main__':
    main()
