"""ImagePseudoVideoDataset and RandomFrameAffine: images as T-frame clips."""
import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from mmcv.transforms import TransformBroadcaster
from mmdet.registry import DATASETS
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks

from mmttsrn.datasets import ImagePseudoVideoDataset, make_synthetic_coco
from mmttsrn.datasets.transforms import RandomFrameAffine


def _rle(h, w, x0, y0, x1, y1):
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle['counts'] = rle['counts'].decode()
    return rle


@pytest.fixture
def coco_ann():
    """Two images; categories 1 (person), 3 (car) and 5 (kite)."""
    return dict(
        images=[
            dict(id=10, file_name='a.jpg', height=8, width=12),
            dict(id=11, file_name='b.jpg', height=8, width=12)
        ],
        annotations=[
            dict(
                id=1,
                image_id=10,
                category_id=3,
                bbox=[1, 2, 3, 4],
                segmentation=_rle(8, 12, 1, 2, 4, 6),
                iscrowd=0),
            dict(
                id=2,
                image_id=10,
                category_id=5,
                bbox=[0, 0, 2, 2],
                segmentation=[[0, 0, 2, 0, 2, 2, 0, 2]],
                iscrowd=0),
            dict(
                id=3,
                image_id=11,
                category_id=1,
                bbox=[2, 2, 4, 4],
                segmentation=[[2, 2, 6, 2, 6, 6, 2, 6]],
                iscrowd=1),
        ],
        categories=[
            dict(id=1, name='person'),
            dict(id=3, name='car'),
            dict(id=5, name='kite')
        ])


def _dump(data, path):
    path.write_text(json.dumps(data))
    return str(path)


def _dataset(path, **kwargs):
    kwargs.setdefault('num_frames', 3)
    kwargs.setdefault('data_prefix', dict(img_path='imgs'))
    return ImagePseudoVideoDataset(ann_file=path, **kwargs)


def test_a_mapped_image_is_a_video(tmp_path, coco_ann):
    ds = _dataset(
        _dump(coco_ann, tmp_path / 'c.json'),
        category_map={
            1: 'person',
            3: 'sedan'
        },
        metainfo=dict(classes=('person', 'sedan', 'dog')))
    assert ds.metainfo['classes'] == ('person', 'sedan', 'dog')
    assert len(ds) == 2
    video = ds.get_data_info(0)
    assert video['video_id'] == 10 and video['video_length'] == 3
    assert [f['frame_id'] for f in video['images']] == [0, 1, 2]
    for frame in video['images']:
        assert frame['img_path'] == 'imgs/a.jpg'
        assert (frame['height'], frame['width']) == (8, 12)
        # The kite (unmapped) is dropped; the car becomes a sedan.
        assert frame['instances'] == [
            dict(
                bbox=[1, 2, 4, 6],
                bbox_label=1,
                mask=coco_ann['annotations'][0]['segmentation'],
                instance_id=1,
                ignore_flag=0)
        ]
    # Frames are separate copies.
    video['images'][0]['instances'].clear()
    assert video['images'][1]['instances']
    crowd = ds.get_data_info(1)['images'][0]['instances'][0]
    assert crowd['ignore_flag'] == 1 and crowd['bbox_label'] == 0


def test_classes_without_a_map(tmp_path, coco_ann):
    path = _dump(coco_ann, tmp_path / 'c.json')
    assert _dataset(path).metainfo['classes'] == ('person', 'car', 'kite')
    ds = _dataset(path, metainfo=dict(classes=('kite', )))
    assert [len(ds.get_data_info(i)['images'][0]['instances'])
            for i in range(2)] == [1, 0]
    ds = _dataset(
        path,
        metainfo=dict(classes=('kite', )),
        filter_cfg=dict(filter_empty_gt=True))
    assert len(ds) == 1


@pytest.mark.parametrize('change, kwargs, match', [
    (lambda a: a['images'][1].pop('height'), {},
     r"c.json' image id 11: missing 'height'"),
    (lambda a: a['annotations'][2].update(image_id=99), {},
     r"c.json' annotation id 3: unknown image_id 99"),
    (lambda a: a['annotations'][0].update(bbox=[1, 2]), {},
     r'annotation id 1: bbox must be'),
    (lambda a: a['annotations'][0]['segmentation'].update(size=[9, 9]), {},
     r"annotation id 1: RLE size \[9, 9\] differs from image 10"),
    (lambda a: a['annotations'].append(dict(a['annotations'][0])), {},
     'annotation id 1: duplicate annotation id'),
    (lambda a: a.pop('images'), {}, r"c.json': missing 'images'"),
    (None, dict(category_map={7: 'person'}, metainfo=dict(classes=['x'])),
     r"category_map: 7 is not a category id of .*c.json"),
    (None, dict(category_map={3: 'truck'}, metainfo=dict(classes=['x'])),
     r"category_map: 3 \('car'\) maps to 'truck', which is not"),
    (None, dict(category_map={3: 'car'}), 'needs the target classes'),
    (None, dict(metainfo=dict(classes=['dog'])),
     r"classes \['dog'\] are not categories"),
])
def test_clear_errors(tmp_path, coco_ann, change, kwargs, match):
    if change is not None:
        change(coco_ann)
    with pytest.raises(ValueError, match=match):
        _dataset(_dump(coco_ann, tmp_path / 'c.json'), **kwargs)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.json'):
        _dataset(str(tmp_path / 'nope.json'))
    (tmp_path / 'bad.json').write_text('[1]')
    with pytest.raises(ValueError, match="bad.json' must hold a COCO"):
        _dataset(str(tmp_path / 'bad.json'))
    with pytest.raises(ValueError, match='num_frames must be an int'):
        _dataset(str(tmp_path / 'bad.json'), num_frames=0)


def _frame_results(masks, ids):
    """One loaded frame: a 20x30 image and its instances."""
    return dict(
        img=np.full((20, 30, 3), 50, dtype=np.uint8),
        gt_masks=BitmapMasks(np.stack(masks).astype(np.uint8), 20, 30),
        gt_bboxes=np.zeros((len(masks), 4), np.float32),
        gt_bboxes_labels=np.arange(len(masks)),
        gt_ignore_flags=np.zeros(len(masks), dtype=bool),
        gt_instances_ids=np.array(ids))


def _box_mask(x0, y0, x1, y1):
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def test_affine_moves_and_drops_instances(monkeypatch):
    transform = RandomFrameAffine()
    # A shift by 8 px to the right pushes the right-edge instance out.
    shift = np.array([[1., 0., 8.], [0., 1., 0.]])
    monkeypatch.setattr(transform, '_random_matrix', lambda h, w: shift)
    results = transform(
        _frame_results([_box_mask(2, 3, 6, 9),
                        _box_mask(26, 0, 30, 4)], [7, 8]))
    assert results['img'].shape == (20, 30, 3)
    assert results['gt_instances_ids'].tolist() == [7]
    assert results['gt_bboxes_labels'].tolist() == [0]
    assert results['gt_masks'].masks.shape == (1, 20, 30)
    np.testing.assert_array_equal(results['gt_bboxes'], [[10, 3, 14, 9]])
    # Box structures stay box structures.
    frame = _frame_results([_box_mask(2, 3, 6, 9)], [7])
    frame['gt_bboxes'] = HorizontalBoxes(frame['gt_bboxes'])
    boxes = transform(frame)['gt_bboxes']
    assert isinstance(boxes, HorizontalBoxes)
    assert boxes.tensor.tolist() == [[10, 3, 14, 9]]
    # The uncovered left strip gets the border value.
    assert (results['img'][:, :8] == 114).all()


def test_each_frame_gets_its_own_affine():
    clip = TransformBroadcaster(
        transforms=[RandomFrameAffine(max_translate_ratio=0.3)],
        share_random_params=True)
    np.random.seed(0)
    frames = [_frame_results([_box_mask(10, 5, 20, 15)], [1])
              for _ in range(4)]
    keys = frames[0].keys()
    out = clip({key: [f[key] for f in frames] for key in keys})
    boxes = {tuple(b[0]) if len(b) else None for b in out['gt_bboxes']}
    assert len(boxes) == 4
    with pytest.raises(ValueError, match='scale_range'):
        RandomFrameAffine(scale_range=(2, 1))


def test_pipeline_gives_a_packed_clip(tmp_path):
    root = tmp_path / 'coco'
    ann_file = make_synthetic_coco(
        str(root), num_images=3, seed=1, size_range=(40, 48))
    num_frames = 3
    ds = DATASETS.build(
        dict(
            type='ImagePseudoVideoDataset',
            ann_file=ann_file,
            data_prefix=dict(img_path=str(root)),
            num_frames=num_frames,
            filter_cfg=dict(filter_empty_gt=True),
            pipeline=[
                dict(type='ClipFrameSample', num_frames=num_frames),
                dict(
                    type='TransformBroadcaster',
                    share_random_params=True,
                    transforms=[
                        dict(type='LoadVideoFrame'),
                        dict(type='LoadTrackAnnotations', with_mask=True),
                        dict(type='RandomFrameAffine'),
                        dict(type='Resize', scale=(32, 24), keep_ratio=False),
                        dict(type='RandomFlip', prob=0.5),
                    ]),
                dict(type='PackTrackInputs')
            ]))
    np.random.seed(1)
    sample = ds[0]
    assert sample['inputs'].shape == (num_frames, 3, 24, 32)
    track = sample['data_samples']
    assert len(track) == num_frames
    ann = json.loads(open(ann_file).read())
    ids = {a['id'] for a in ann['annotations'] if a['image_id'] == 1}
    for frame in track.video_data_samples:
        gt = frame.gt_instances
        assert set(gt.instances_ids.tolist()) <= ids
        assert gt.masks.masks.shape == (len(gt), 24, 32)
        assert frame.video_length == num_frames
    # The affine differs per frame, so the frames do.
    assert not torch.equal(sample['inputs'][0], sample['inputs'][1])
