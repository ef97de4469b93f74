"""TT-SRN must look at its input: after training, two clips give different
outputs (trained with the paper's post-norm encoder from scratch, the memory
collapsed to one vector per clip and every video got the same answer).

Trains the quickstart model (``configs/ttsrn/ttsrn_synthetic.py``) from
scratch on two generated videos, so it takes a few tens of seconds.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmttsrn.datasets import make_synthetic_vis
from mmttsrn.engine import relative_spread, token_spread
from mmttsrn.utils import sync_num_frames

# Each test trains the quickstart model for up to a minute.
pytestmark = pytest.mark.slow

# A video with instances of several categories; AP 1.0 from 300 iterations
# on (0.97 at 250), about 50 s of one core.
OVERFIT_SEED, OVERFIT_ITERS = 3, 300
CONFIG = osp.join(
    osp.dirname(__file__), '..', '..', '..', 'configs', 'ttsrn',
    'ttsrn_synthetic.py')


def _runner(root, work_dir, iters, ann='train'):
    cfg = sync_num_frames(Config.fromfile(CONFIG))
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = str(root) + '/'
        cfg[split].num_workers = 0
        cfg[split].persistent_workers = False
    cfg.val_dataloader.dataset.ann_file = f'annotations/{ann}.json'
    cfg.val_dataloader.dataset.data_prefix = dict(img_path='train/JPEGImages')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=iters + 1)
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=iters + 1, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1000)
    cfg.custom_hooks = []
    cfg.log_processor = dict(by_epoch=False)
    cfg.val_evaluator.outfile_prefix = str(work_dir) + '/results'
    cfg.work_dir = str(work_dir)
    cfg.randomness = dict(seed=0)
    return Runner.from_cfg(cfg)


def test_outputs_depend_on_the_clip(tmp_path):
    root = tmp_path / 'data'
    make_synthetic_vis(
        str(root),
        num_train_videos=2,
        num_val_videos=0,
        seed=5,
        frames_range=(4, 4),
        size_range=(96, 96),
        width_range=(128, 128))
    torch.manual_seed(0)
    runner = _runner(root, tmp_path / 'work', iters=150)
    runner.train()
    model = runner.model.eval()
    captured = {}
    model.track_head.transformer.encoder.register_forward_hook(
        lambda module, inputs, outputs: captured.update(memory=outputs))
    outs, memories = [], []
    with torch.no_grad():
        for data in runner.train_dataloader.dataset:
            batch = model.data_preprocessor(
                dict(inputs=[data['inputs']],
                     data_samples=[data['data_samples']]))
            outs.append(model._forward(batch['inputs'])['cls_scores'][-1])
            memories.append(captured['memory'])
            if len(outs) == 2:
                break
    # Tokens of a clip differ, and so do the two clips' class logits.
    assert min(token_spread(m) for m in memories) > 0.05
    assert relative_spread(torch.cat(outs)) > 0.05


def test_overfits_one_short_clip(tmp_path):
    """The sanity check of DETR-style models: the quickstart model, trained
    from scratch on one 4-frame video for about a minute of CPU, finds,
    classifies, tracks and segments all of that video's instances.

    Measured: AP 1.00 (spatio-temporal IoU 0.97-0.99 per instance); with
    bilinear instead of convex up-sampling of the stride-4 masks it was 0.70.
    """
    root = tmp_path / 'data'
    make_synthetic_vis(
        str(root),
        num_train_videos=1,
        num_val_videos=0,
        seed=OVERFIT_SEED,
        frames_range=(4, 4),
        size_range=(96, 96),
        width_range=(128, 128))
    runner = _runner(root, tmp_path / 'work', iters=OVERFIT_ITERS)
    runner.train()
    metrics = runner.val()
    assert metrics['youtube_vis/segm_mAP_50'] == 1.0, metrics
    assert metrics['youtube_vis/segm_mAP'] >= 0.9, metrics
