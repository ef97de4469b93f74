"""The synthetic generator writes deterministic, official-format data."""
import json
import os.path as osp

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import pytest

from mmttsrn.datasets import SYNTHETIC_VIS_CATEGORIES, make_synthetic_vis
from mmttsrn.datasets.synthetic import _CATEGORY_COLOURS


def _load(root, name):
    with open(osp.join(root, 'annotations', f'{name}.json')) as f:
        return json.load(f)


@pytest.mark.parametrize('split,num_videos', [('train', 8), ('valid', 3)])
def test_official_format(synthetic_root, split, num_videos):
    data = _load(synthetic_root, split)
    assert set(data) >= {'videos', 'annotations', 'categories'}
    assert data['categories'] == [dict(c) for c in SYNTHETIC_VIS_CATEGORIES]
    assert [c['id'] for c in data['categories']] == [1, 2, 3, 4]
    assert len(data['videos']) == num_videos
    videos = {v['id']: v for v in data['videos']}
    for video in data['videos']:
        assert 3 <= video['length'] == len(video['file_names']) <= 6
        assert 32 <= video['height'] <= 64 and 32 <= video['width'] <= 64
        for name in video['file_names']:
            img = cv2.imread(
                osp.join(synthetic_root, split, 'JPEGImages', name))
            assert img.shape == (video['height'], video['width'], 3)
    assert len({a['id']
                for a in data['annotations']}) == len(data['annotations'])
    annotated = set()
    for ann in data['annotations']:
        video = videos[ann['video_id']]
        assert ann['category_id'] in (1, 2, 3, 4)
        for key in ('segmentations', 'bboxes', 'areas'):
            assert len(ann[key]) == video['length']
        present = [s is not None for s in ann['segmentations']]
        assert any(present)
        assert present == [b is not None for b in ann['bboxes']]
        assert present == [a is not None for a in ann['areas']]
        for segm, bbox, area in zip(ann['segmentations'], ann['bboxes'],
                                    ann['areas']):
            if segm is None:
                continue
            assert isinstance(segm['counts'], str)
            assert segm['size'] == [video['height'], video['width']]
            assert mask_utils.area(segm) == area > 0
            np.testing.assert_allclose(mask_utils.toBbox(segm), bbox)
        annotated.add(ann['video_id'])
    assert annotated == set(videos), 'every video has an instance'


def test_masks_follow_occlusion_and_colours(synthetic_root):
    data = _load(synthetic_root, 'train')
    anns_of = {}
    for ann in data['annotations']:
        anns_of.setdefault(ann['video_id'], []).append(ann)
    num_absent = 0
    for video in data['videos']:
        for t, name in enumerate(video['file_names']):
            img = cv2.imread(
                osp.join(synthetic_root, 'train', 'JPEGImages',
                         name))[..., ::-1]
            covered = np.zeros(img.shape[:2], dtype=int)
            for ann in anns_of[video['id']]:
                segm = ann['segmentations'][t]
                if segm is None:
                    num_absent += 1
                    continue
                mask = mask_utils.decode(segm).astype(bool)
                covered += mask
                # Visible pixels show the instance's own category colour.
                colour = np.median(img[mask], axis=0)
                assert np.abs(colour - _CATEGORY_COLOURS[ann['category_id']]
                              ).max() < 60, (video['id'], t, ann['id'])
            assert covered.max() <= 1, 'masks of one frame overlap'
    assert num_absent > 0, 'some instance should be absent in some frame'


def test_unannotated_valid(synthetic_root):
    valid = _load(synthetic_root, 'valid')
    unannotated = _load(synthetic_root, 'valid_unannotated')
    assert 'annotations' not in unannotated
    assert unannotated['videos'] == valid['videos']
    assert unannotated['categories'] == valid['categories']


def test_deterministic_per_seed(tmp_path):
    kwargs = dict(
        num_train_videos=2,
        num_val_videos=1,
        frames_range=(2, 3),
        size_range=(16, 24))
    make_synthetic_vis(str(tmp_path / 'a'), seed=3, **kwargs)
    make_synthetic_vis(str(tmp_path / 'b'), seed=3, **kwargs)
    make_synthetic_vis(str(tmp_path / 'c'), seed=4, **kwargs)
    assert _load(tmp_path / 'a', 'train') == _load(tmp_path / 'b', 'train')
    assert _load(tmp_path / 'a', 'train') != _load(tmp_path / 'c', 'train')
    name = _load(tmp_path / 'a', 'valid')['videos'][0]['file_names'][0]
    frames = [
        open(tmp_path / r / 'valid' / 'JPEGImages' / name, 'rb').read()
        for r in 'ab'
    ]
    assert frames[0] == frames[1]


def test_refuses_to_overwrite(tmp_path):
    kwargs = dict(
        num_train_videos=1,
        num_val_videos=1,
        frames_range=(2, 2),
        size_range=(16, 16))
    make_synthetic_vis(str(tmp_path), **kwargs)
    with pytest.raises(FileExistsError, match='train.json'):
        make_synthetic_vis(str(tmp_path), **kwargs)
    user_file = tmp_path / 'notes.txt'
    user_file.write_text('mine')
    make_synthetic_vis(str(tmp_path), seed=1, overwrite=True, **kwargs)
    assert user_file.read_text() == 'mine'


@pytest.mark.parametrize('kwargs,message', [
    (dict(num_train_videos=-1), 'numbers of videos'),
    (dict(frames_range=(5, 2)), 'frames_range'),
    (dict(size_range=(4, 8)), 'size_range'),
    (dict(max_instances=0), 'max_instances'),
    (dict(width_range=(30, 20)), 'width_range'),
    (dict(colour='rainbow'), 'colour'),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_synthetic_vis(str(tmp_path), **kwargs)


def test_colour_per_instance_hides_the_category_colour(tmp_path):
    """With colour='instance' the colour says nothing about the category,
    and frame widths follow width_range."""
    make_synthetic_vis(
        str(tmp_path),
        num_train_videos=12,
        num_val_videos=0,
        frames_range=(1, 1),
        size_range=(40, 40),
        width_range=(60, 64),
        max_instances=1,
        colour='instance')
    data = _load(tmp_path, 'train')
    assert all(40 == v['height'] and 60 <= v['width'] <= 64
               for v in data['videos'])
    off_colour = 0
    for video, ann in zip(data['videos'], data['annotations']):
        img = cv2.imread(
            str(tmp_path / 'train' / 'JPEGImages' /
                video['file_names'][0]))[..., ::-1]
        mask = mask_utils.decode(ann['segmentations'][0]).astype(bool)
        colour = np.median(img[mask], axis=0)
        off_colour += np.abs(colour - _CATEGORY_COLOURS[ann['category_id']]
                             ).max() > 40
    assert off_colour >= 6
