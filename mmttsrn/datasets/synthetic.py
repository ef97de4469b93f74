"""A generator of small synthetic datasets in the official YouTube-VIS format.

The videos show coloured shapes that move, scale, rotate, occlude each other
and enter or leave the frame, on textured backgrounds. By default each
category has its own colour family (an easy set: colour gives the class);
with ``colour='instance'`` every instance gets a random colour, so that only
the shape gives the class. They are small and fast to make, so that the
whole training and evaluation path can be exercised (and a tiny model can
learn something) without downloading YouTube-VIS.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import mmcv
import numpy as np
import pycocotools.mask as mask_utils

__all__ = ['SYNTHETIC_VIS_CATEGORIES', 'make_synthetic_vis']

#: Categories of the synthetic dataset, in the official ``categories`` form.
SYNTHETIC_VIS_CATEGORIES = (
    dict(id=1, name='circle'),
    dict(id=2, name='square'),
    dict(id=3, name='triangle'),
    dict(id=4, name='cross'),
)

# One saturated RGB colour per category, far from the grey-ish backgrounds,
# so that a tiny model can tell the categories apart.
_CATEGORY_COLOURS = {
    1: (220, 40, 40),
    2: (40, 190, 40),
    3: (40, 80, 230),
    4: (235, 200, 30),
}
_SPLITS = ('train', 'valid')
_COLOUR_MODES = ('category', 'instance')


def _convex_polygon_mask(vertices: np.ndarray, xx: np.ndarray,
                         yy: np.ndarray) -> np.ndarray:
    """Rasterise a convex polygon.

    Args:
        vertices (np.ndarray): Counter-clockwise corners, shape (V, 2) as
            (x, y) in pixels.
        xx (np.ndarray): Pixel-centre x coordinates, shape (H, W).
        yy (np.ndarray): Pixel-centre y coordinates, shape (H, W).

    Returns:
        np.ndarray: Bool mask of shape (H, W).
    """
    start = vertices
    edge = np.roll(vertices, -1, axis=0) - vertices
    # Inside = on the left of (or on) every edge: cross products >= 0.
    cross = (
        edge[:, 0, None, None] * (yy[None] - start[:, 1, None, None]) -
        edge[:, 1, None, None] * (xx[None] - start[:, 0, None, None]))
    return (cross >= 0).all(axis=0)


def _rotated(points: np.ndarray, angle: float, cx: float,
             cy: float) -> np.ndarray:
    """Rotate (P, 2) points about the origin by ``angle`` and shift them."""
    cos, sin = np.cos(angle), np.sin(angle)
    rot = np.array([[cos, -sin], [sin, cos]])
    return points @ rot.T + np.array([cx, cy])


def _shape_mask(category_id: int, cx: float, cy: float, radius: float,
                angle: float, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Rasterise the shape of a category.

    Args:
        category_id (int): Category id (see ``SYNTHETIC_VIS_CATEGORIES``).
        cx (float): Centre x in pixels.
        cy (float): Centre y in pixels.
        radius (float): Half of the shape's extent in pixels.
        angle (float): Rotation in radians (ignored for circles).
        xx (np.ndarray): Pixel-centre x coordinates, shape (H, W).
        yy (np.ndarray): Pixel-centre y coordinates, shape (H, W).

    Returns:
        np.ndarray: Bool mask of shape (H, W).
    """
    if category_id == 1:
        return (xx - cx)**2 + (yy - cy)**2 <= radius**2
    if category_id == 2:
        square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * radius
        return _convex_polygon_mask(_rotated(square, angle, cx, cy), xx, yy)
    if category_id == 3:
        corners = np.deg2rad([90, 210, 330])
        triangle = np.stack([np.cos(corners), np.sin(corners)], 1) * radius
        return _convex_polygon_mask(_rotated(triangle, angle, cx, cy), xx, yy)
    if category_id == 4:
        arm = np.array([[-1, -0.3], [1, -0.3], [1, 0.3], [-1, 0.3]]) * radius
        bar = _convex_polygon_mask(_rotated(arm, angle, cx, cy), xx, yy)
        post = _convex_polygon_mask(
            _rotated(arm, angle + np.pi / 2, cx, cy), xx, yy)
        return bar | post
    raise ValueError(f'unknown synthetic category id {category_id}')


def _background(rng: np.random.Generator, height: int,
                width: int) -> np.ndarray:
    """A low-contrast, grey-ish textured background.

    Args:
        rng (np.random.Generator): Random generator.
        height (int): Frame height.
        width (int): Frame width.

    Returns:
        np.ndarray: float32 RGB image of shape (H, W, 3).
    """
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    base = rng.uniform(70, 180) + rng.uniform(-20, 20, size=3)
    kind = rng.integers(3)
    direction = rng.uniform(0, 2 * np.pi)
    # Coordinate along a random direction, in [-1, 1] over the frame.
    along = (xx * np.cos(direction) + yy * np.sin(direction)) / max(
        height, width)
    if kind == 0:
        texture = rng.normal(0, 12, size=(height, width))
    elif kind == 1:
        texture = 40 * along
    else:
        period = rng.uniform(6, 20) / max(height, width)
        texture = 25 * np.sin(2 * np.pi * along / period)
    return (base[None, None] + texture[..., None]).astype(np.float32)


def _draw_colour(rng: np.random.Generator, category_id: int,
                 colour_mode: str) -> np.ndarray:
    """RGB colour (3,) of an instance: its category's colour, jittered
    (``colour_mode='category'``), or any colour (``'instance'``)."""
    if colour_mode == 'category':
        return np.clip(
            np.array(_CATEGORY_COLOURS[category_id]) +
            rng.integers(-25, 26, size=3), 0, 255)
    return rng.integers(0, 256, size=3)


def _instance_track(rng: np.random.Generator, length: int, height: int,
                    width: int, colour_mode: str) -> dict:
    """Random motion parameters of one instance over a video.

    Args:
        rng (np.random.Generator): Random generator.
        length (int): Number of frames.
        height (int): Frame height.
        width (int): Frame width.
        colour_mode (str): ``'category'`` (the category's colour, jittered)
            or ``'instance'`` (any colour).

    Returns:
        dict: category_id, colour, per-frame centre (T, 2), radius (T,),
        angle (T,) and the first and last frame where it exists.
    """
    size = min(height, width)
    category_id = int(rng.integers(1, len(SYNTHETIC_VIS_CATEGORIES) + 1))
    colour = _draw_colour(rng, category_id, colour_mode)
    t = np.arange(length)
    centre = (
        rng.uniform(0.1, 0.9, size=2) * (width, height) +
        t[:, None] * rng.uniform(-0.08, 0.08, size=2) * size)
    radius = rng.uniform(0.12, 0.25) * size * (1 + rng.uniform(-0.04, 0.04))**t
    angle = rng.uniform(0, 2 * np.pi) + t * rng.uniform(-0.15, 0.15)
    first = int(rng.integers(0, max(length // 2, 1))) \
        if rng.random() < 0.3 else 0
    last = int(rng.integers(first, length)) \
        if rng.random() < 0.3 else length - 1
    return dict(
        category_id=category_id,
        colour=colour,
        centre=centre,
        radius=radius,
        angle=angle,
        first=first,
        last=last)


def _render_video(rng: np.random.Generator, length: int, height: int,
                  width: int, max_instances: int,
                  colour_mode: str) -> Tuple[List[np.ndarray], List[dict]]:
    """Render the frames and per-instance masks of one video.

    Instances are drawn back to front; a drawn shape removes its pixels from
    the masks of the instances behind it, so masks never overlap.

    Args:
        rng (np.random.Generator): Random generator.
        length (int): Number of frames T.
        height (int): Frame height H.
        width (int): Frame width W.
        max_instances (int): Largest number of instances.
        colour_mode (str): See :func:`_instance_track`.

    Returns:
        tuple: The frames (T uint8 RGB arrays of shape (H, W, 3)) and, per
        instance, a dict with its category_id and bool masks (T, H, W)
        (all False where it is absent or fully hidden).
    """
    num_instances = int(rng.integers(1, max_instances + 1))
    tracks = [
        _instance_track(rng, length, height, width, colour_mode)
        for _ in range(num_instances)
    ]
    background = _background(rng, height, width)
    yy, xx = np.mgrid[:height, :width].astype(np.float32) + 0.5
    masks = np.zeros((num_instances, length, height, width), dtype=bool)
    frames = []
    for t in range(length):
        frame = background + rng.normal(0, 3, size=background.shape)
        for i, track in enumerate(tracks):
            if not track['first'] <= t <= track['last']:
                continue
            shape = _shape_mask(track['category_id'], *track['centre'][t],
                                track['radius'][t], track['angle'][t], xx, yy)
            frame[shape] = track['colour']
            masks[:i, t] &= ~shape
            masks[i, t] = shape
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    instances = [
        dict(category_id=track['category_id'], masks=masks[i])
        for i, track in enumerate(tracks)
    ]
    return frames, instances


def _encode(mask: np.ndarray) -> dict:
    """Encode a bool (H, W) mask as RLE with a str ``counts``."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    return rle


def _make_split(out_dir: str, split: str, num_videos: int, seed: int,
                frames_range: Sequence[int], size_range: Sequence[int],
                width_range: Sequence[int], max_instances: int,
                colour_mode: str, jpeg_quality: int) -> dict:
    """Render one split, write its frames and return its annotation dict."""
    videos, annotations = [], []
    for index in range(num_videos):
        rng = np.random.default_rng([seed, _SPLITS.index(split), index])
        length = int(rng.integers(frames_range[0], frames_range[1] + 1))
        height, width = (
            int(rng.integers(low, high + 1))
            for low, high in (size_range, width_range))
        name = _video_name(split, index)
        for _ in range(100):
            frames, instances = _render_video(rng, length, height, width,
                                              max_instances, colour_mode)
            instances = [ins for ins in instances if ins['masks'].any()]
            if instances:
                break
        file_names = [f'{name}/{t:05d}.jpg' for t in range(length)]
        for file_name, frame in zip(file_names, frames):
            mmcv.imwrite(
                frame[..., ::-1],
                osp.join(out_dir, split, 'JPEGImages', file_name),
                params=[cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        video_id = index + 1
        videos.append(
            dict(
                id=video_id,
                width=width,
                height=height,
                length=length,
                file_names=file_names))
        for instance in instances:
            segmentations, bboxes, areas = [], [], []
            for mask in instance['masks']:
                if not mask.any():
                    segmentations.append(None)
                    bboxes.append(None)
                    areas.append(None)
                    continue
                rle = _encode(mask)
                segmentations.append(rle)
                bboxes.append(mask_utils.toBbox(rle).tolist())
                areas.append(float(mask_utils.area(rle)))
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    video_id=video_id,
                    category_id=instance['category_id'],
                    segmentations=segmentations,
                    bboxes=bboxes,
                    areas=areas,
                    iscrowd=0,
                    width=width,
                    height=height,
                    length=length))
    return dict(
        info=dict(description=f'synthetic YouTube-VIS ({split}), '
                  f'seed {seed}'),
        videos=videos,
        annotations=annotations,
        categories=[dict(c) for c in SYNTHETIC_VIS_CATEGORIES])


def _video_name(split: str, index: int) -> str:
    return f'{split}_{index:05d}'


def _check_range(name: str, value: Sequence[int], low: int) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1]:
        raise ValueError(f'{name} must be (min, max) with {low} <= min <= '
                         f'max, got {value}')


def make_synthetic_vis(out_dir: str,
                       num_train_videos: int = 40,
                       num_val_videos: int = 10,
                       seed: int = 0,
                       frames_range: Sequence[int] = (4, 12),
                       size_range: Sequence[int] = (64, 128),
                       width_range: Optional[Sequence[int]] = None,
                       max_instances: int = 3,
                       colour: str = 'category',
                       jpeg_quality: int = 95,
                       overwrite: bool = False) -> Dict[str, str]:
    """Write a synthetic dataset in the official YouTube-VIS layout.

    Layout::

        out_dir/train/JPEGImages/<video name>/00000.jpg ...
        out_dir/valid/JPEGImages/<video name>/00000.jpg ...
        out_dir/annotations/train.json
        out_dir/annotations/valid.json              (annotated: local AP)
        out_dir/annotations/valid_unannotated.json  (like the server split)

    The JSON files follow the official format: ``videos`` (id, width,
    height, length, file_names), ``annotations`` (id, video_id, category_id,
    and per frame ``segmentations`` as RLE with str counts, ``bboxes`` as
    [x, y, w, h] and ``areas``, all null where the instance is absent or
    fully hidden) and ``categories`` (ids 1..K, see
    ``SYNTHETIC_VIS_CATEGORIES``). Every video has at least one instance.
    The output depends only on ``seed`` and the size arguments, and each
    video only on ``seed``, its split and its index.

    Args:
        out_dir (str): Dataset root.
        num_train_videos (int): Videos in the train split. Defaults to 40.
        num_val_videos (int): Videos in the valid split. Defaults to 10.
        seed (int): Random seed. Defaults to 0.
        frames_range (Sequence[int]): Inclusive (min, max) number of frames
            per video. Defaults to (4, 12).
        size_range (Sequence[int]): Inclusive (min, max) frame height (and
            width, unless ``width_range`` is given) in pixels, drawn
            independently. Defaults to (64, 128).
        width_range (Sequence[int], optional): Inclusive (min, max) frame
            width. Defaults to ``size_range``.
        max_instances (int): Most instances per video. Defaults to 3.
        colour (str): ``'category'``: each category has its own colour
            family; ``'instance'``: each instance has a random colour, so
            only the shape tells the category. Defaults to 'category'.
        jpeg_quality (int): JPEG quality of the frames. Defaults to 95.
        overwrite (bool): Replace files of an earlier run. Without it, the
            generator refuses to write over any existing annotation file or
            video folder. Nothing is ever deleted. Defaults to False.

    Returns:
        dict[str, str]: Paths of the annotation files written, keyed
        ``train``, ``valid`` and ``valid_unannotated``.
    """
    if num_train_videos < 0 or num_val_videos < 0:
        raise ValueError('the numbers of videos must be >= 0, got '
                         f'{num_train_videos} and {num_val_videos}')
    _check_range('frames_range', frames_range, 1)
    _check_range('size_range', size_range, 8)
    width_range = size_range if width_range is None else width_range
    _check_range('width_range', width_range, 8)
    if colour not in _COLOUR_MODES:
        raise ValueError(f'colour must be one of {_COLOUR_MODES}, got '
                         f'{colour!r}')
    if max_instances < 1:
        raise ValueError(f'max_instances must be >= 1, got {max_instances}')
    ann_dir = osp.join(out_dir, 'annotations')
    ann_files = {
        name: osp.join(ann_dir, f'{name}.json')
        for name in ('train', 'valid', 'valid_unannotated')
    }
    counts = dict(train=num_train_videos, valid=num_val_videos)
    if not overwrite:
        existing = [path for path in ann_files.values() if osp.exists(path)]
        existing += [
            folder for split in _SPLITS for folder in (
                osp.join(out_dir, split, 'JPEGImages', _video_name(split, i))
                for i in range(counts[split])) if osp.exists(folder)
        ]
        if existing:
            raise FileExistsError(
                'refusing to overwrite existing synthetic data (pass '
                f'overwrite=True / --overwrite to replace it): {existing[:3]}'
                +
                (f' and {len(existing) - 3} more' if len(existing) > 3 else '')
            )
    os.makedirs(ann_dir, exist_ok=True)
    for split in _SPLITS:
        data = _make_split(out_dir, split, counts[split], seed, frames_range,
                           size_range, width_range, max_instances, colour,
                           jpeg_quality)
        _dump(data, ann_files[split])
        if split == 'valid':
            data.pop('annotations')
            _dump(data, ann_files['valid_unannotated'])
    return ann_files


def _dump(data: dict, path: str) -> None:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f)
