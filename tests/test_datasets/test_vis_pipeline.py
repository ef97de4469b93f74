"""The dataset configs' pipelines give packed clips and whole videos."""
import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.registry import DATASETS
from mmdet.structures import TrackDataSample
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData

from mmttsrn.datasets import make_synthetic_vis
from mmttsrn.utils import load_tool_config

CONFIG_DIR = Path(__file__).parents[2] / 'configs' / '_base_'


def _synthetic_cfg():
    return Config.fromfile(str(CONFIG_DIR / 'datasets' / 'synthetic_vis.py'))


def _small_pipeline(pipeline, num_frames=3, scale=(48, 32), flip_prob=None):
    """A copy of a config pipeline with smaller clips and frames."""
    pipeline = copy.deepcopy(pipeline)
    for step in pipeline:
        if step['type'] == 'ClipFrameSample':
            step['num_frames'] = num_frames
        for inner in step.get('transforms', []):
            if inner['type'] == 'Resize':
                inner['scale'] = scale
            if inner['type'] == 'RandomFlip' and flip_prob is not None:
                inner['prob'] = flip_prob
    return pipeline


def _build(dataset_cfg, root, **changes):
    dataset_cfg = copy.deepcopy(dataset_cfg)
    dataset_cfg.update(data_root=str(root), **changes)
    return DATASETS.build(dataset_cfg)


def test_train_sample_is_a_packed_clip(synthetic_root):
    cfg = _synthetic_cfg()
    ds = _build(
        cfg.train_dataloader.dataset,
        synthetic_root,
        pipeline=_small_pipeline(cfg.train_pipeline))
    sample = ds[0]
    assert sample['inputs'].shape == (3, 3, 32, 48)  # (T, 3, H, W)
    assert sample['inputs'].dtype == torch.uint8
    track = sample['data_samples']
    assert isinstance(track, TrackDataSample)
    assert len(track) == 3
    video = ds.get_data_info(0)
    for frame in track.video_data_samples:
        gt = frame.gt_instances
        assert frame.img_shape == (32, 48)
        assert frame.video_length == 3
        assert frame.ori_video_length == video['video_length']
        assert gt.masks.masks.shape == (len(gt), 32, 48)
        assert len(gt.bboxes) == len(gt.labels) == len(gt.instances_ids)
        # Every instance id of the clip is an annotation of this video.
        ids = {
            ins['instance_id']
            for f in video['images']
            for ins in f['instances']
        }
        assert set(gt.instances_ids.tolist()) <= ids


def test_flip_is_shared_by_the_frames_of_a_clip(synthetic_root):
    cfg = _synthetic_cfg()
    ds = _build(
        cfg.train_dataloader.dataset,
        synthetic_root,
        pipeline=_small_pipeline(cfg.train_pipeline))
    np.random.seed(0)
    seen = set()
    for _ in range(12):
        flips = [f.flip for f in ds[1]['data_samples'].video_data_samples]
        assert len(set(flips)) == 1
        seen.add(flips[0])
    assert seen == {True, False}


def test_flip_flips_images_and_masks_alike(synthetic_root):
    cfg = _synthetic_cfg()
    samples = []
    for prob in (0.0, 1.0):
        ds = _build(
            cfg.train_dataloader.dataset,
            synthetic_root,
            pipeline=_small_pipeline(cfg.train_pipeline, flip_prob=prob))
        # (video, key frame): the clip starts at frame 0 both times.
        samples.append(ds.prepare_data((0, 0)))
    plain, flipped = samples
    assert torch.equal(flipped['inputs'], plain['inputs'].flip(-1))
    for a, b in zip(plain['data_samples'].video_data_samples,
                    flipped['data_samples'].video_data_samples):
        assert not a.flip and b.flip
        np.testing.assert_array_equal(b.gt_instances.masks.masks,
                                      a.gt_instances.masks.masks[..., ::-1])
        assert torch.equal(a.gt_instances.instances_ids,
                           b.gt_instances.instances_ids)


def test_test_sample_is_the_whole_video(synthetic_root):
    cfg = _synthetic_cfg()
    ds = _build(
        cfg.val_dataloader.dataset,
        synthetic_root,
        pipeline=_small_pipeline(cfg.test_pipeline))
    video = ds.get_data_info(0)
    sample = ds[0]
    length = video['video_length']
    assert sample['inputs'].shape == (length, 3, 32, 48)
    frames = sample['data_samples'].video_data_samples
    assert [f.frame_id for f in frames] == list(range(length))
    for frame, info in zip(frames, video['images']):
        # What YouTubeVISMetric reads: original size and raw instances.
        assert frame.ori_shape == (info['height'], info['width'])
        assert frame.ori_video_length == length
        assert frame.instances == info['instances']
        assert frame.gt_instances.masks.masks.shape[1:] == frame.ori_shape


@pytest.fixture(scope='module')
def youtube_vis_root(synthetic_root, tmp_path_factory):
    """The official layout, faked with the synthetic frames."""
    root = tmp_path_factory.mktemp('youtube_vis_2019')
    (root / 'annotations').mkdir()
    for split in ('train', 'valid'):
        (root / split).mkdir()
        os.symlink(synthetic_root / split / 'JPEGImages',
                   root / split / 'JPEGImages')
    ann_dir = synthetic_root / 'annotations'
    for src, dst in (('train', 'train'), ('train', 'train_sub'),
                     ('train', 'val_sub'), ('valid_unannotated', 'valid')):
        os.symlink(ann_dir / f'{src}.json',
                   root / 'annotations' / f'{dst}.json')
    return root


@pytest.mark.parametrize('version', ['2019', '2021'])
def test_youtube_vis_configs_build(youtube_vis_root, version):
    cfg = Config.fromfile(
        str(CONFIG_DIR / 'datasets' / f'youtube_vis_{version}.py'))
    assert cfg.num_frames == 36 and cfg.img_scale == (540, 300)
    assert cfg.test_evaluator.format_only
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        assert dataset.data_root == f'data/youtube_vis_{version}/'
        assert dataset.dataset_version == version
    train = _build(cfg.train_dataloader.dataset, youtube_vis_root)
    sample = train[0]
    assert sample['inputs'].shape == (36, 3, 300, 540)
    val = _build(
        cfg.val_dataloader.dataset,
        youtube_vis_root,
        pipeline=_small_pipeline(cfg.test_pipeline))
    assert len(val[0]['data_samples'].video_data_samples[0].instances) > 0
    test = _build(
        cfg.test_dataloader.dataset,
        youtube_vis_root,
        pipeline=_small_pipeline(cfg.test_pipeline))
    assert test.metainfo['dataset_version'] == version
    assert len(
        test[0]['data_samples']) == test.get_data_info(0)['video_length']


def test_dataset_config_composes_with_runtime(tmp_path):
    """A config that changes T sets num_frames alone, as youtube_vis_2019.py
    says: the config loaders set the clip sampler from it."""
    config = tmp_path / 'cfg.py'
    config.write_text(
        f"_base_ = ['{CONFIG_DIR}/datasets/synthetic_vis.py', "
        f"'{CONFIG_DIR}/default_runtime.py']\n"
        'num_frames = 5\n')
    cfg = load_tool_config(str(config))
    assert cfg.custom_imports.imports == ['mmttsrn']
    assert cfg.train_dataloader.dataset.pipeline[0].num_frames == 5
    assert cfg.train_dataloader.dataset.pipeline[1].type == \
        'TransformBroadcaster'


def test_synthetic_pipelines_use_its_clip_length_and_frame_size():
    cfg = Config.fromfile(f'{CONFIG_DIR}/datasets/synthetic_vis.py')
    train = cfg.train_dataloader.dataset.pipeline
    assert train[0] == dict(type='ClipFrameSample', num_frames=4)
    for pipeline in (train, cfg.val_dataloader.dataset.pipeline,
                     cfg.test_dataloader.dataset.pipeline):
        resize, = (step for broadcast in pipeline
                   for step in broadcast.get('transforms', [])
                   if step.type == 'Resize')
        assert tuple(resize.scale) == (128, 96)


def test_metric_scores_ground_truth_as_perfect(synthetic_root):
    """The configured metric reads what the test pipeline packs and scores
    the ground truth fed back as predictions as perfect."""
    cfg = _synthetic_cfg()
    ds = _build(
        cfg.val_dataloader.dataset,
        synthetic_root,
        pipeline=_small_pipeline(cfg.test_pipeline))
    evaluator = Evaluator(cfg.val_evaluator)
    evaluator.dataset_meta = ds.metainfo
    for i in range(len(ds)):
        track = ds[i]['data_samples']
        for frame in track.video_data_samples:
            gt = frame.gt_instances
            frame.pred_track_instances = InstanceData(
                bboxes=gt.bboxes,
                labels=gt.labels,
                scores=torch.ones(len(gt)),
                instances_id=gt.instances_ids,
                masks=torch.from_numpy(gt.masks.masks).bool())
        evaluator.process(data_samples=[track])
    metrics = evaluator.evaluate(len(ds))
    assert metrics['youtube_vis/segm_mAP'] == pytest.approx(1.0)
    assert metrics['youtube_vis/segm_AR@10'] == pytest.approx(1.0)


def test_format_only_on_unannotated_split(synthetic_root, tmp_path):
    """The server-split path: no annotations in, results.json + zip out."""
    cfg = _synthetic_cfg()
    ds = _build(
        cfg.val_dataloader.dataset,
        synthetic_root,
        ann_file='annotations/valid_unannotated.json',
        pipeline=_small_pipeline(cfg.test_pipeline))
    prefix = str(tmp_path / 'results')
    evaluator = Evaluator(
        dict(type='YouTubeVISMetric', format_only=True, outfile_prefix=prefix))
    evaluator.dataset_meta = ds.metainfo
    for i in range(len(ds)):
        track = ds[i]['data_samples']
        for frame in track.video_data_samples:
            h, w = frame.ori_shape
            frame.pred_track_instances = InstanceData(
                bboxes=torch.tensor([[0., 0., w / 2, h / 2]]),
                labels=torch.tensor([2]),
                scores=torch.tensor([0.9]),
                instances_id=torch.tensor([0]),
                masks=torch.ones(1, h, w, dtype=torch.bool))
        evaluator.process(data_samples=[track])
    assert evaluator.evaluate(len(ds)) == {}
    results = json.loads(Path(f'{prefix}.json').read_text())
    assert Path(f'{prefix}.submission_file.zip').exists()
    assert sorted(r['video_id'] for r in results) == sorted(
        ds.get_data_info(i)['video_id'] for i in range(len(ds)))
    for r in results:
        assert r['category_id'] == 3  # label 2 -> category id 3
        assert len(r['segmentations']) == next(
            ds.get_data_info(i)['video_length'] for i in range(len(ds))
            if ds.get_data_info(i)['video_id'] == r['video_id'])


def test_one_frame_videos_are_padded_to_a_clip(tmp_path):
    make_synthetic_vis(
        str(tmp_path),
        num_train_videos=1,
        num_val_videos=1,
        frames_range=(1, 1),
        size_range=(16, 24))
    cfg = _synthetic_cfg()
    train = _build(
        cfg.train_dataloader.dataset,
        tmp_path,
        pipeline=_small_pipeline(cfg.train_pipeline))
    sample = train[0]
    assert sample['inputs'].shape == (3, 3, 32, 48)
    frames = sample['data_samples'].video_data_samples
    assert [f.frame_id for f in frames] == [0, 0, 0]
    assert all(f.ori_video_length == 1 for f in frames)
    val = _build(
        cfg.val_dataloader.dataset,
        tmp_path,
        pipeline=_small_pipeline(cfg.test_pipeline))
    assert val[0]['inputs'].shape == (1, 3, 32, 48)
