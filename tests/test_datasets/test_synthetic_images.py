"""make_synthetic_coco and its CLI: still images of the synthetic shapes."""
import importlib.util
import json
from pathlib import Path

import mmcv
import numpy as np
import pycocotools.mask as mask_utils
import pytest

from mmttsrn.datasets import SYNTHETIC_VIS_CATEGORIES, make_synthetic_coco

TOOL = Path(__file__).parents[2] / 'tools' / 'dataset_converters' / \
    'make_synthetic_coco.py'


def test_coco_layout_and_masks(tmp_path):
    ann_file = make_synthetic_coco(
        str(tmp_path), num_images=4, seed=3, size_range=(24, 32))
    assert ann_file == str(tmp_path / 'annotations' / 'instances_train.json')
    data = json.loads(Path(ann_file).read_text())
    assert data['categories'] == [dict(c) for c in SYNTHETIC_VIS_CATEGORIES]
    assert [img['id'] for img in data['images']] == [1, 2, 3, 4]
    for img in data['images']:
        assert img['file_name'].startswith('train/')
        assert mmcv.imread(str(tmp_path / img['file_name'])).shape == (
            img['height'], img['width'], 3)
    images = {img['id']: img for img in data['images']}
    assert {a['image_id'] for a in data['annotations']} == set(images)
    union = {}
    for ann in data['annotations']:
        img = images[ann['image_id']]
        rle = ann['segmentation']
        assert rle['size'] == [img['height'], img['width']]
        mask = mask_utils.decode(
            dict(size=rle['size'], counts=rle['counts'].encode()))
        assert mask.sum() == ann['area'] > 0
        ys, xs = np.nonzero(mask)
        assert ann['bbox'] == [
            xs.min(), ys.min(),
            xs.max() - xs.min() + 1,
            ys.max() - ys.min() + 1
        ]
        # Visible masks of an image never overlap.
        seen = union.setdefault(ann['image_id'], np.zeros_like(mask))
        assert not (seen & mask).any()
        seen |= mask


def test_seeded_and_refuses_to_overwrite(tmp_path):
    first = make_synthetic_coco(str(tmp_path / 'a'), num_images=2, seed=0,
                                size_range=(16, 20))
    again = make_synthetic_coco(str(tmp_path / 'b'), num_images=3, seed=0,
                                size_range=(16, 20))
    a, b = (json.loads(Path(p).read_text()) for p in (first, again))
    assert a['images'] == b['images'][:2]
    with pytest.raises(FileExistsError, match='overwrite'):
        make_synthetic_coco(str(tmp_path / 'a'), num_images=2)
    with pytest.raises(ValueError, match='colour'):
        make_synthetic_coco(str(tmp_path / 'c'), colour='red')


def test_cli(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location('make_synthetic_coco', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main([
        '--out',
        str(tmp_path), '--num-images', '2', '--size', '16', '20', '--split',
        'val', '--colour', 'instance'
    ])
    assert 'instances_val.json' in capsys.readouterr().out
    data = json.loads(
        (tmp_path / 'annotations' / 'instances_val.json').read_text())
    assert len(data['images']) == 2
