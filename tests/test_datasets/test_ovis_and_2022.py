"""OVIS and YouTube-VIS 2022: their JSON files and dataset configs."""
import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from mmengine.config import Config

from mmttsrn.datasets import YouTubeVISOfficialDataset
from mmttsrn.utils import sync_num_frames

CONFIGS = Path(__file__).parents[2] / 'configs'
OVIS_CLASSES = ('Person', 'Bird', 'Cat', 'Dog', 'Horse', 'Sheep', 'Cow',
                'Elephant', 'Bear', 'Zebra', 'Giraffe', 'Poultry',
                'Giant_panda', 'Lizard', 'Parrot', 'Monkey', 'Rabbit',
                'Tiger', 'Fish', 'Turtle', 'Bicycle', 'Motorcycle',
                'Airplane', 'Boat', 'Vehical')


def _ovis(annotated):
    """An OVIS-like file: extra video keys, supercategories, and (for the
    unannotated splits) ``"annotations": null``."""
    h, w = 6, 8
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[1:4, 2:6] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle['counts'] = rle['counts'].decode()
    return dict(
        info=dict(description='OVIS'),
        licenses=[dict(id=1, name='CC BY-NC-SA 4.0', url='')],
        videos=[
            dict(
                id=1,
                width=w,
                height=h,
                length=2,
                date_captured='',
                license=1,
                flickr_url='',
                coco_url='',
                file_names=['2524877e/img_0000001.jpg',
                            '2524877e/img_0000002.jpg'])
        ],
        categories=[
            dict(id=i + 1, name=name, supercategory='object')
            for i, name in enumerate(OVIS_CLASSES)
        ],
        annotations=[
            dict(
                id=1,
                video_id=1,
                category_id=4,
                segmentations=[rle, None],
                bboxes=[[2, 1, 4, 3], None],
                areas=[12, None],
                iscrowd=0,
                height=h,
                width=w,
                length=1)
        ] if annotated else None)


def test_ovis_files_are_read(tmp_path):
    path = tmp_path / 'annotations_train.json'
    path.write_text(json.dumps(_ovis(annotated=True)))
    ds = YouTubeVISOfficialDataset(
        ann_file=str(path),
        data_prefix=dict(img_path='train'),
        filter_cfg=dict(filter_empty_gt=True))
    assert ds.metainfo['classes'] == OVIS_CLASSES
    frames = ds.get_data_info(0)['images']
    assert frames[0]['img_path'] == 'train/2524877e/img_0000001.jpg'
    assert frames[0]['instances'][0]['bbox'] == [2, 1, 6, 4]
    assert frames[0]['instances'][0]['bbox_label'] == 3
    assert frames[1]['instances'] == []


def test_ovis_unannotated_split_has_null_annotations(tmp_path):
    path = tmp_path / 'annotations_valid.json'
    path.write_text(json.dumps(_ovis(annotated=False)))
    ds = YouTubeVISOfficialDataset(ann_file=str(path), test_mode=True)
    assert len(ds) == 1
    assert ds.get_data_info(0)['video_length'] == 2
    with pytest.raises(ValueError, match="it has no 'annotations'"):
        YouTubeVISOfficialDataset(
            ann_file=str(path), filter_cfg=dict(filter_empty_gt=True))


@pytest.mark.parametrize('name, root, num_classes, prefixes', [
    ('ttsrn_ovis', 'data/ovis/', 25,
     ('train', 'train', 'valid', 'annotations/annotations_valid.json')),
    ('ttsrn_yvis2022', 'data/youtube_vis_2022/', 40,
     ('train/JPEGImages', 'train/JPEGImages', 'valid/JPEGImages',
      'annotations/valid.json')),
])
def test_configs(name, root, num_classes, prefixes):
    cfg = sync_num_frames(
        Config.fromfile(str(CONFIGS / 'ttsrn' / f'{name}.py')))
    head = cfg.model.track_head
    assert head.num_classes == num_classes
    assert head.num_frames == cfg.num_frames
    loaders = (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader)
    for loader, prefix in zip(loaders, prefixes):
        assert loader.dataset.type == 'YouTubeVISOfficialDataset'
        assert loader.dataset.data_root == root
        assert loader.dataset.data_prefix.img_path == prefix
    assert cfg.test_dataloader.dataset.ann_file == prefixes[3]
    train_ann = cfg.train_dataloader.dataset.ann_file
    assert train_ann == 'annotations/train_sub.json'
