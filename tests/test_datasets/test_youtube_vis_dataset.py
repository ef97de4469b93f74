"""YouTubeVISOfficialDataset reads the official JSON into mmdet's format."""
import copy
import json
import logging
import os.path as osp

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from mmengine.logging import MMLogger

from mmttsrn.datasets import YouTubeVISOfficialDataset
from mmttsrn.datasets.youtube_vis import _decode_rle_string, _rle_error

CLASSES = ('circle', 'square', 'triangle', 'cross')


def _load(root, name):
    with open(osp.join(root, 'annotations', f'{name}.json')) as f:
        return json.load(f)


def _dump(data, path):
    with open(path, 'w') as f:
        json.dump(data, f)
    return str(path)


def _dataset(ann_file, **kwargs):
    kwargs.setdefault('data_prefix', dict(img_path='imgs'))
    return YouTubeVISOfficialDataset(ann_file=str(ann_file), **kwargs)


def _square(h, w, x0, y0, x1, y1):
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle['counts'] = rle['counts'].decode()
    return rle


@pytest.fixture
def tiny_ann():
    """Two videos (3 frames and 1 frame), categories 1 and 2."""
    h, w = 8, 10
    return dict(
        videos=[
            dict(
                id=1,
                width=w,
                height=h,
                length=3,
                file_names=['a/0.jpg', 'a/1.jpg', 'a/2.jpg']),
            dict(id=2, width=w, height=h, length=1, file_names=['b/0.jpg'])
        ],
        annotations=[
            dict(
                id=7,
                video_id=1,
                category_id=2,
                segmentations=[
                    _square(h, w, 1, 2, 4, 6), None,
                    _square(h, w, 2, 2, 5, 6)
                ],
                bboxes=[[1, 2, 3, 4], None, [2, 2, 3, 4]],
                areas=[12, None, 12],
                iscrowd=0),
            dict(
                id=9,
                video_id=2,
                category_id=1,
                segmentations=[_square(h, w, 0, 0, 2, 2)],
                bboxes=[None],
                areas=[4],
                iscrowd=1),
        ],
        categories=[dict(id=2, name='dog'),
                    dict(id=1, name='cat')])


def test_structure_on_tiny_file(tmp_path, tiny_ann):
    ds = _dataset(_dump(tiny_ann, tmp_path / 'a.json'), data_root='root')
    assert ds.metainfo['classes'] == ('cat', 'dog')
    assert ds.metainfo['cat_ids'] == [1, 2]
    assert len(ds) == 2
    video = ds.get_data_info(0)
    assert video['video_id'] == 1 and video['video_length'] == 3
    frames = video['images']
    assert [f['frame_id'] for f in frames] == [0, 1, 2]
    assert frames[1]['img_path'] == osp.join('root', 'imgs', 'a/1.jpg')
    assert all(f['video_id'] == 1 for f in frames)
    assert (frames[0]['height'], frames[0]['width']) == (8, 10)
    assert [len(f['instances']) for f in frames] == [1, 0, 1]
    instance = frames[2]['instances'][0]
    assert instance['bbox'] == [2, 2, 5, 6]  # x1, y1, x2, y2
    assert instance['bbox_label'] == 1  # 'dog' is category 2
    assert instance['instance_id'] == 7
    assert instance['ignore_flag'] == 0
    assert instance['mask'] == tiny_ann['annotations'][0]['segmentations'][2]
    one_frame = ds.get_data_info(1)
    assert one_frame['video_length'] == 1
    # Null bbox computed from the mask; iscrowd -> ignore_flag.
    assert one_frame['images'][0]['instances'][0]['bbox'] == [0, 0, 2, 2]
    assert one_frame['images'][0]['instances'][0]['ignore_flag'] == 1
    img_ids = [
        f['img_id'] for i in range(2) for f in ds.get_data_info(i)['images']
    ]
    assert len(set(img_ids)) == 4


def test_polygon_and_uncompressed_rle_masks(tmp_path, tiny_ann):
    ann = tiny_ann['annotations'][0]
    ann['bboxes'] = None
    ann['segmentations'][0] = [[1, 2, 4, 2, 4, 6, 1, 6]]
    rle = mask_utils.decode(ann['segmentations'][2])
    ann['segmentations'][2] = dict(
        size=[8, 10], counts=_uncompressed_counts(rle))
    ds = _dataset(_dump(tiny_ann, tmp_path / 'a.json'))
    frames = ds.get_data_info(0)['images']
    np.testing.assert_allclose(frames[0]['instances'][0]['bbox'], [1, 2, 4, 6])
    np.testing.assert_allclose(frames[2]['instances'][0]['bbox'], [2, 2, 5, 6])


def _uncompressed_counts(mask):
    """Column-major run lengths starting with zeros (COCO's 'counts')."""
    flat = mask.flatten(order='F')
    changes = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))
    return np.diff(np.r_[0, changes]).tolist()


def test_synthetic_train_matches_json(synthetic_root):
    ds = _dataset(
        synthetic_root / 'annotations' / 'train.json',
        data_prefix=dict(
            img_path=str(synthetic_root / 'train' / 'JPEGImages')),
        filter_cfg=dict(filter_empty_gt=True))
    data = _load(synthetic_root, 'train')
    assert ds.metainfo['classes'] == CLASSES
    assert len(ds) == len(data['videos'])
    for i, video in enumerate(data['videos']):
        info = ds.get_data_info(i)
        assert info['video_length'] == video['length']
        for frame in info['images']:
            assert osp.exists(frame['img_path'])
        for ann in data['annotations']:
            if ann['video_id'] != video['id']:
                continue
            for t, bbox in enumerate(ann['bboxes']):
                found = [
                    ins for ins in info['images'][t]['instances']
                    if ins['instance_id'] == ann['id']
                ]
                if bbox is None:
                    assert not found
                    continue
                x, y, w, h = bbox
                assert found[0]['bbox'] == [x, y, x + w, y + h]
                assert found[0]['bbox_label'] == ann['category_id'] - 1


def test_metainfo_classes_select_categories(tmp_path, tiny_ann):
    ds = _dataset(
        _dump(tiny_ann, tmp_path / 'a.json'), metainfo=dict(classes=('dog', )))
    assert ds.metainfo['cat_ids'] == [2]
    frames = ds.get_data_info(0)['images']
    assert frames[0]['instances'][0]['bbox_label'] == 0
    assert ds.get_data_info(1)['images'][0]['instances'] == []
    with pytest.raises(ValueError, match=r"\['bird'\] are not categories"):
        _dataset(
            _dump(tiny_ann, tmp_path / 'a.json'),
            metainfo=dict(classes=('dog', 'bird')))


def test_filter_empty_videos_in_training_only(tmp_path, tiny_ann):
    tiny_ann['annotations'].pop(1)  # video 2 now has no instance
    path = _dump(tiny_ann, tmp_path / 'a.json')
    assert len(_dataset(path, filter_cfg=dict(filter_empty_gt=True))) == 1
    assert len(_dataset(path)) == 2
    kept = _dataset(
        path, filter_cfg=dict(filter_empty_gt=True), test_mode=True)
    assert len(kept) == 2
    assert kept.get_data_info(0)['video_length'] == 3
    with pytest.raises(ValueError, match='unknown filter_cfg keys'):
        _dataset(path, filter_cfg=dict(min_size=32))


def test_test_mode_keeps_unannotated_videos(synthetic_root):
    ds = _dataset(
        synthetic_root / 'annotations' / 'valid_unannotated.json',
        test_mode=True)
    data = _load(synthetic_root, 'valid_unannotated')
    assert len(ds) == len(data['videos'])
    for i, video in enumerate(data['videos']):
        info = ds.get_data_info(i)
        assert info['video_length'] == video['length']
        assert all(f['instances'] == [] for f in info['images'])


def test_unannotated_file_in_training_says_what_to_do(synthetic_root):
    with pytest.raises(ValueError, match='use test_mode=True'):
        _dataset(
            synthetic_root / 'annotations' / 'valid_unannotated.json',
            filter_cfg=dict(filter_empty_gt=True))


def test_missing_file_names_path(tmp_path):
    path = tmp_path / 'nope.json'
    with pytest.raises(FileNotFoundError, match='nope.json'):
        _dataset(path)


def test_malformed_json_names_file(tmp_path):
    path = tmp_path / 'bad.json'
    path.write_text('{"videos": [')
    with pytest.raises(ValueError, match='bad.json.*not valid JSON'):
        _dataset(path)


def _broken(tiny_ann, edit):
    ann = copy.deepcopy(tiny_ann)
    edit(ann)
    return ann


@pytest.mark.parametrize('edit,message', [
    (lambda a: a.pop('videos'), "missing 'videos'"),
    (lambda a: a['annotations'][0].pop('segmentations'),
     "annotation id 7: missing 'segmentations'"),
    (lambda a: a['videos'][1].pop('file_names'),
     "video id 2: missing 'file_names'"),
    (lambda a: a['categories'][0].pop('name'), "category #0: missing 'name'"),
    (lambda a: a['annotations'][0]['segmentations'].pop(),
     'annotation id 7: 2 segmentations but video 1 has 3 frames'),
    (lambda a: a['annotations'][0]['bboxes'].append(None),
     'annotation id 7: 4 bboxes but video 1 has 3 frames'),
    (lambda a: a['annotations'][1].update(category_id=99),
     'annotation id 9: unknown category_id 99'),
    (lambda a: a['annotations'][1].update(video_id=5),
     'annotation id 9: unknown video_id 5'),
    (lambda a: a['annotations'][1].update(id=7),
     'annotation id 7: duplicate annotation id'),
    (lambda a: a['videos'][0].update(length=4),
     "video id 1: 'length' is 4 but there are 3 file_names"),
    (lambda a: a['annotations'][0]['segmentations'][0].update(size=[9, 9]),
     r'annotation id 7, frame 0: RLE size \[9, 9\] differs'),
    (lambda a: a['annotations'][0]['segmentations'].__setitem__(1, 5),
     'annotation id 7, frame 1: segmentation must be'),
])
def test_bad_records_are_named(tmp_path, tiny_ann, edit, message):
    path = _dump(_broken(tiny_ann, edit), tmp_path / 'a.json')
    with pytest.raises(ValueError, match=message):
        _dataset(path)


def test_empty_file_is_reported(tmp_path, tiny_ann):
    tiny_ann['videos'], tiny_ann['annotations'] = [], []
    with pytest.raises(ValueError, match='contains no videos'):
        _dataset(_dump(tiny_ann, tmp_path / 'a.json'), test_mode=True)


def test_dataset_version_in_metainfo(tmp_path, tiny_ann):
    ds = _dataset(_dump(tiny_ann, tmp_path / 'a.json'), dataset_version='2021')
    assert ds.metainfo['dataset_version'] == '2021'


@pytest.fixture
def logged():
    """Messages print_log sends to mmengine's current logger meanwhile."""
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _rle_frame(tiny_ann, counts):
    tiny_ann['annotations'][0]['segmentations'][2]['counts'] = counts
    return tiny_ann


@pytest.mark.parametrize('counts,message', [
    ('garbage counts!', 'not a valid compressed RLE string'),
    ('0a', 'not a valid compressed RLE string'),  # unterminated number
    ('1', r'do not describe a 8x10 mask .*got sum 1\)'),
    ([10, 5], 'add up to 80, got sum 15'),
    ([90, -10], 'must be >= 0'),
    ([70, 'x', 10], 'RLE counts must be integers'),
    (12, 'must be a string or a list of integers, got int'),
])
def test_garbage_rle_counts_are_named_at_load(tmp_path, tiny_ann, counts,
                                              message):
    path = _dump(_rle_frame(tiny_ann, counts), tmp_path / 'bad_rle.json')
    with pytest.raises(ValueError,
                       match=f'bad_rle.json.*annotation id 7, frame 2: '
                       f'.*{message}'):
        _dataset(path)


def test_rle_check_agrees_with_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = rng.integers(1, 40, size=2)
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        rle = mask_utils.encode(np.asfortranarray(mask))
        runs = _decode_rle_string(rle['counts'].decode())
        assert runs.tolist() == _uncompressed_counts(mask)
        assert _rle_error(
            dict(size=[int(h), int(w)], counts=rle['counts'].decode()), h,
            w) is None


@pytest.mark.parametrize('bbox', [
    [2, 2, 0, 4],  # w = 0
    [2, 2, 3, -1],  # h < 0
    [20, 2, 3, 4],  # right of the image (width 10)
    [2, -5, 3, 4],  # above it
])
def test_bad_box_next_to_a_mask_is_taken_from_the_mask(
        tmp_path, tiny_ann, bbox, logged):
    tiny_ann['annotations'][0]['bboxes'][0] = bbox
    tiny_ann['annotations'][0]['bboxes'][2] = list(bbox)
    ds = _dataset(_dump(tiny_ann, tmp_path / 'boxes.json'))
    frames = ds.get_data_info(0)['images']
    assert [len(f['instances']) for f in frames] == [1, 0, 1]
    assert frames[0]['instances'][0]['bbox'] == [1, 2, 4, 6]
    assert frames[2]['instances'][0]['bbox'] == [2, 2, 5, 6]
    warnings = [m for m in logged if 'replaced' in m]
    assert len(warnings) == 1
    assert 'boxes.json' in warnings[0] and ': 2 boxes' in warnings[0]
    assert 'annotation id 7, frame 0' in warnings[0]


def test_good_boxes_are_kept_without_warning(tmp_path, tiny_ann, logged):
    tiny_ann['annotations'][0]['bboxes'][0] = [1.5, 2, 2.5, 4]
    ds = _dataset(_dump(tiny_ann, tmp_path / 'boxes.json'))
    assert ds.get_data_info(0)['images'][0]['instances'][0]['bbox'] == [
        1.5, 2, 4, 6
    ]
    assert not any('replaced' in m for m in logged)


def test_non_contiguous_category_ids_give_no_warning(tmp_path, tiny_ann,
                                                     logged):
    tiny_ann['categories'] = [dict(id=30, name='dog'), dict(id=4, name='cat')]
    tiny_ann['annotations'][0]['category_id'] = 30
    tiny_ann['annotations'][1]['category_id'] = 4
    ds = _dataset(_dump(tiny_ann, tmp_path / 'a.json'))
    assert ds.metainfo['cat_ids'] == [4, 30]
    assert ds.get_data_info(0)['images'][0]['instances'][0]['bbox_label'] == 1
    assert not any('match' in m for m in logged), logged


def test_has_annotations_in_metainfo(tmp_path, tiny_ann):
    ds = _dataset(_dump(tiny_ann, tmp_path / 'a.json'))
    assert ds.metainfo['has_annotations'] is True
    tiny_ann.pop('annotations')
    ds = _dataset(_dump(tiny_ann, tmp_path / 'b.json'), test_mode=True)
    assert ds.metainfo['has_annotations'] is False
