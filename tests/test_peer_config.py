"""The Mask2Former-VIS peer (configs/peers/) builds from its config and
trains on a clip of the quickstart pipeline, on CPU."""
import math
from pathlib import Path

import torch
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config

from mmttsrn.datasets import make_synthetic_vis

ROOT = Path(__file__).parents[1]
PEER = ROOT / 'configs' / 'peers' / 'mask2former_vis_r18_synthetic.py'
QUICKSTART = ROOT / 'configs' / 'ttsrn' / 'ttsrn_synthetic.py'


def test_peer_shares_the_quickstart_data_and_schedule():
    cfg, base = Config.fromfile(str(PEER)), Config.fromfile(str(QUICKSTART))
    head = cfg.model.track_head
    assert cfg.model.type == 'Mask2FormerVideo'
    assert cfg.model.backbone.depth == 18
    assert cfg.model.backbone.init_cfg is None and not cfg.model.init_cfg
    assert head.num_classes == base.num_classes
    assert head.num_frames == base.num_frames
    assert len(head.loss_cls.class_weight) == base.num_classes + 1
    assert (head.num_queries, head.feat_channels) == (20, 128)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                'val_evaluator', 'test_evaluator', 'train_cfg',
                'param_scheduler'):
        assert cfg[key] == base[key], key
    assert cfg.optim_wrapper.optimizer == base.optim_wrapper.optimizer
    assert cfg.optim_wrapper.clip_grad == base.optim_wrapper.clip_grad
    assert cfg.custom_hooks == []
    assert 'http' not in cfg.pretty_text and 'torchvision://' not in str(
        cfg.model)


def test_peer_trains_one_step_on_a_clip(tmp_path):
    cfg = Config.fromfile(str(PEER))
    make_synthetic_vis(
        str(tmp_path),
        num_train_videos=1,
        num_val_videos=0,
        seed=0,
        frames_range=(4, 6))
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.data_root = str(tmp_path) + '/'
    data = DATASETS.build(dataset_cfg)[0]
    assert len(data['data_samples']) == cfg.num_frames

    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    batch = model.data_preprocessor(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
        training=True)
    assert batch['inputs'].shape[:2] == (1, cfg.num_frames)
    losses = model(**batch, mode='loss')
    # Class, mask and dice losses of the last prediction and the 9 before
    # it (d0: before the first decoder layer, d1-d8: after layers 1-8).
    assert {'loss_cls', 'loss_mask', 'loss_dice', 'd8.loss_dice'} <= set(
        losses)
    total = sum(losses.values())
    assert math.isfinite(total.item())
    total.backward()
    grad = model.track_head.cls_embed.weight.grad
    assert grad is not None and grad.abs().sum() > 0
