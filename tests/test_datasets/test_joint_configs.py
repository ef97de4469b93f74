"""The joint video + pseudo-video configs build and mix their sources."""
import copy
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from mmttsrn.datasets import make_synthetic_coco

CONFIGS = Path(__file__).parents[2] / 'configs' / 'ttsrn'
SHAPES = ('circle', 'square', 'triangle', 'cross')


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic_coco')
    make_synthetic_coco(str(root), num_images=4, size_range=(32, 40))
    return root


def _shrink(pipeline):
    """Clips of 2 frames of 32x24, for speed."""
    pipeline = copy.deepcopy(pipeline)
    pipeline[0]['num_frames'] = 2
    for step in pipeline[1]['transforms']:
        if step['type'] == 'Resize':
            step['scale'] = (32, 24)
    return pipeline


def _loader_cfg(cfg, synthetic_root, coco_root):
    """The config's train dataloader on the tiny generated sets."""
    loader = copy.deepcopy(cfg.train_dataloader)
    loader.update(num_workers=0, persistent_workers=False)
    videos, images = loader.dataset.datasets
    videos.update(
        data_root=str(synthetic_root),
        ann_file='annotations/train.json',
        pipeline=_shrink(videos.pipeline))
    images.update(
        data_root=str(coco_root),
        ann_file='annotations/instances_train.json',
        num_frames=2,
        pipeline=_shrink(images.pipeline))
    return loader


@pytest.mark.parametrize('name', ['ttsrn_yvis_coco_joint',
                                  'ttsrn_synthetic_coco_joint'])
def test_joint_loader_alternates_sources(name, synthetic_root, coco_root):
    cfg = Config.fromfile(str(CONFIGS / f'{name}.py'))
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    loader = _loader_cfg(cfg, synthetic_root, coco_root)
    images = loader.dataset.datasets[1]
    assert images.type == 'ImagePseudoVideoDataset'
    transforms = [t['type'] for t in images.pipeline[1]['transforms']]
    assert transforms.index('RandomFrameAffine') == transforms.index(
        'LoadTrackAnnotations') + 1
    if name == 'ttsrn_yvis_coco_joint':
        # The COCO -> YouTube-VIS map targets the config's classes; on the
        # synthetic stand-ins, map their categories by name instead.
        assert set(images.category_map.values()) <= set(
            images.metainfo['classes'])
        assert len(images.metainfo['classes']) == 40
        # (Assigned, not updated: ConfigDict.update would merge the maps.)
        images['category_map'] = {i + 1: n for i, n in enumerate(SHAPES)}
        images['metainfo'] = dict(classes=SHAPES)
    dataloader = Runner.build_dataloader(loader, seed=0)
    dataset = dataloader.dataset
    assert dataset.metainfo['classes'] == SHAPES
    num_videos = dataset.cumulative_sizes[0]
    assert len(dataset) == num_videos + 4
    # 1:1 ratio: video and image clips alternate, one clip per batch.
    indices = [i for _, i in zip(range(8), dataloader.sampler)]
    assert [i >= num_videos for i in indices] == [False, True] * 4
    batches = [batch for _, batch in zip(range(2), dataloader)]
    for batch in batches:
        assert len(batch['inputs']) == 1
        assert batch['inputs'][0].shape == (2, 3, 24, 32)
        frames = batch['data_samples'][0].video_data_samples
        assert len(frames) == 2


def test_sources_with_other_classes_are_refused(synthetic_root, coco_root):
    cfg = Config.fromfile(str(CONFIGS / 'ttsrn_synthetic_coco_joint.py'))
    loader = _loader_cfg(cfg, synthetic_root, coco_root)
    loader.dataset.datasets[1]['metainfo'] = dict(classes=SHAPES[::-1])
    with pytest.raises(ValueError, match='meta information of the 2-th'):
        Runner.build_dataloader(loader, seed=0)
