"""Still images of the synthetic shapes, as a COCO instance-segmentation set.

The images are drawn like single frames of :mod:`.synthetic`'s videos (same
categories, colours, shapes and backgrounds), so that they can be mixed into
the training of the synthetic video dataset through
:class:`ImagePseudoVideoDataset`, the way COCO is mixed into YouTube-VIS.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import cv2
import mmcv
import numpy as np
import pycocotools.mask as mask_utils

from .synthetic import (_COLOUR_MODES, SYNTHETIC_VIS_CATEGORIES, _background,
                        _check_range, _draw_colour, _encode, _shape_mask)

__all__ = ['make_synthetic_coco']


def _render_image(rng: np.random.Generator, height: int, width: int,
                  max_instances: int,
                  colour_mode: str) -> Tuple[np.ndarray, List[dict]]:
    """Render one image and the visible mask of each of its shapes.

    Shapes are drawn back to front; a drawn shape removes its pixels from
    the masks of the shapes behind it, so masks never overlap.

    Args:
        rng (np.random.Generator): Random generator.
        height (int): Image height H.
        width (int): Image width W.
        max_instances (int): Most shapes per image.
        colour_mode (str): ``'category'`` (the category's colour, jittered)
            or ``'instance'`` (any colour).

    Returns:
        tuple: The uint8 RGB image (H, W, 3) and, per shape, a dict with
        its category_id and bool mask (H, W) (all False if fully hidden).
    """
    size = min(height, width)
    yy, xx = np.mgrid[:height, :width].astype(np.float32) + 0.5
    image = _background(rng, height, width)
    image = image + rng.normal(0, 3, size=image.shape)
    num_instances = int(rng.integers(1, max_instances + 1))
    masks = np.zeros((num_instances, height, width), dtype=bool)
    category_ids = []
    for i in range(num_instances):
        category_id = int(rng.integers(1, len(SYNTHETIC_VIS_CATEGORIES) + 1))
        colour = _draw_colour(rng, category_id, colour_mode)
        # Same placement and size ranges as a video's first frame.
        cx, cy = rng.uniform(0.1, 0.9, size=2) * (width, height)
        radius = rng.uniform(0.12, 0.25) * size
        shape = _shape_mask(category_id, cx, cy, radius,
                            rng.uniform(0, 2 * np.pi), xx, yy)
        image[shape] = colour
        masks[:i] &= ~shape
        masks[i] = shape
        category_ids.append(category_id)
    instances = [
        dict(category_id=category_id, mask=mask)
        for category_id, mask in zip(category_ids, masks)
    ]
    return np.clip(image, 0, 255).astype(np.uint8), instances


def make_synthetic_coco(out_dir: str,
                        num_images: int = 200,
                        split: str = 'train',
                        seed: int = 0,
                        size_range: Sequence[int] = (64, 128),
                        max_instances: int = 3,
                        colour: str = 'category',
                        jpeg_quality: int = 95,
                        overwrite: bool = False) -> str:
    """Write synthetic still images in the COCO instance-segmentation format.

    Layout::

        out_dir/<split>/000000.jpg ...
        out_dir/annotations/instances_<split>.json

    The JSON has ``images`` (id from 1, file_name ``<split>/<6 digits>.jpg``
    relative to ``out_dir``, height, width), ``annotations`` (id from 1,
    image_id, category_id, ``segmentation`` as RLE with str counts, ``bbox``
    [x, y, w, h], area, iscrowd 0) and ``categories`` (the synthetic video
    dataset's, ``SYNTHETIC_VIS_CATEGORIES``). Hidden shapes are left out;
    every image has at least one shape. Each image depends only on ``seed``,
    ``split``, its index and the size arguments.

    Args:
        out_dir (str): Dataset root.
        num_images (int): Images to write. Defaults to 200.
        split (str): Name of the image folder and of the annotation file.
            Defaults to 'train'.
        seed (int): Random seed. Defaults to 0.
        size_range (Sequence[int]): Inclusive (min, max) image height and
            width in pixels, drawn independently. Defaults to (64, 128).
        max_instances (int): Most shapes per image. Defaults to 3.
        colour (str): ``'category'``: each category has its own colour
            family; ``'instance'``: a random colour per shape.
            Defaults to 'category'.
        jpeg_quality (int): JPEG quality. Defaults to 95.
        overwrite (bool): Replace the files of an earlier run; without it,
            an existing annotation file or image folder is refused.
            Defaults to False.

    Returns:
        str: Path of the annotation file written.
    """
    if num_images < 1:
        raise ValueError(f'num_images must be >= 1, got {num_images}')
    _check_range('size_range', size_range, 8)
    if colour not in _COLOUR_MODES:
        raise ValueError(f'colour must be one of {_COLOUR_MODES}, got '
                         f'{colour!r}')
    if max_instances < 1:
        raise ValueError(f'max_instances must be >= 1, got {max_instances}')
    if not split or osp.basename(split) != split:
        raise ValueError(f'split must be a plain folder name, got {split!r}')
    ann_file = osp.join(out_dir, 'annotations', f'instances_{split}.json')
    img_dir = osp.join(out_dir, split)
    if not overwrite:
        existing = [p for p in (ann_file, img_dir) if osp.exists(p)]
        if existing:
            raise FileExistsError(
                'refusing to overwrite existing synthetic images (pass '
                f'overwrite=True / --overwrite to replace them): {existing}')
    images, annotations = [], []
    for index in range(num_images):
        # A stream per (seed, split, index): images do not depend on
        # num_images; the split name is hashed stably into the seed.
        split_key = int.from_bytes(split.encode(), 'little') % (2**32)
        rng = np.random.default_rng([seed, split_key, index])
        height, width = (
            int(v)
            for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
        for _ in range(100):
            image, instances = _render_image(rng, height, width,
                                             max_instances, colour)
            instances = [ins for ins in instances if ins['mask'].any()]
            if instances:
                break
        file_name = f'{split}/{index:06d}.jpg'
        mmcv.imwrite(
            image[..., ::-1],
            osp.join(out_dir, file_name),
            params=[cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        image_id = index + 1
        images.append(
            dict(
                id=image_id, file_name=file_name, height=height,
                width=width))
        for instance in instances:
            rle = _encode(instance['mask'])
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=instance['category_id'],
                    segmentation=rle,
                    bbox=mask_utils.toBbox(rle).tolist(),
                    area=float(mask_utils.area(rle)),
                    iscrowd=0))
    data = dict(
        info=dict(description=f'synthetic shapes, COCO format ({split}), '
                  f'seed {seed}'),
        images=images,
        annotations=annotations,
        categories=[dict(c) for c in SYNTHETIC_VIS_CATEGORIES])
    _dump_atomic(data, ann_file)
    return ann_file


def _dump_atomic(data: Dict, path: str) -> None:
    """Write JSON to a temporary file, then rename it over ``path``."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(data, f)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
