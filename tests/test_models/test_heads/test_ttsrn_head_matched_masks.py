"""In training, TTSRNHead runs its mask head only on the matched slots where
that is exact: the same losses and gradients as running it on every slot."""
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, TrackDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData
from tiny_models import tiny_head_cfg

import mmttsrn  # noqa: F401

T, N, S = 2, 4, 32


def _head(**kwargs):
    head = MODELS.build(
        tiny_head_cfg(
            num_classes=3,
            num_frames=T,
            num_queries=N,
            transformer=dict(
                type='ClipTransformer',
                num_heads=4,
                num_encoder_layers=1,
                num_decoder_layers=2,
                feedforward_channels=64,
                dropout=0.0),
            **kwargs))
    head.init_weights()
    return head


def _video(num_gts, rng):
    """``num_gts`` instances with random boxes and masks; the last one is
    absent from the second frame."""
    frames = []
    for t in range(T):
        ids = [i for i in range(num_gts) if t == 0 or i < num_gts - 1]
        xy = rng.integers(0, S // 2, (len(ids), 2))
        wh = rng.integers(4, S // 2, (len(ids), 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        masks = np.zeros((len(ids), S, S), np.uint8)
        for j, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
            masks[j, y1:y2, x1:x2] = 1
        sample = DetDataSample(
            metainfo=dict(img_shape=(S, S), batch_input_shape=(S, S)))
        sample.gt_instances = InstanceData(
            bboxes=torch.from_numpy(boxes),
            labels=torch.tensor([i % 3 for i in ids], dtype=torch.long),
            instances_ids=torch.tensor(ids, dtype=torch.long),
            masks=BitmapMasks(masks, S, S))
        frames.append(sample)
    video = TrackDataSample()
    video.video_data_samples = frames
    return video


def _feats(batch):
    gen = torch.Generator().manual_seed(1)
    return [
        torch.randn(batch * T, c, S // s, S // s, generator=gen)
        for c, s in zip([8, 16, 32, 64], [4, 8, 16, 32])
    ]


def _losses_and_grads(head, feats, pad_mask, videos):
    head.zero_grad()
    torch.manual_seed(0)  # the same dropout in both runs
    losses = head.loss(feats, pad_mask, videos)
    sum(losses.values()).backward()
    grads = {
        k: p.grad.clone()
        for k, p in head.named_parameters() if p.grad is not None
    }
    return {k: v.detach() for k, v in losses.items()}, grads


@pytest.mark.parametrize('num_gts', [(1, ), (1, 3), (2, 6), (0, 2), (0, )])
def test_matched_masks_only_equals_every_slot(num_gts):
    """Fewer, as many and more gt instances than slots, a video without."""
    head = _head()
    assert head.masks_after_matching
    rng = np.random.default_rng(0)
    videos = [_video(m, rng) for m in num_gts]
    feats = _feats(len(videos))
    pad_mask = torch.zeros(len(videos), T, S, S, dtype=torch.bool)
    slot_counts = []
    forward = head.mask_head.forward
    head.mask_head.forward = lambda query, *args: (
        slot_counts.append(query.shape[2]) or forward(query, *args))
    sparse, sparse_grads = _losses_and_grads(head, feats, pad_mask, videos)
    head.train_cfg['matched_masks_only'] = False
    assert not head.masks_after_matching
    dense, dense_grads = _losses_and_grads(head, feats, pad_mask, videos)
    assert slot_counts == [max(1, min(N, max(num_gts))), N]
    assert sparse.keys() == dense.keys()
    for key in dense:
        torch.testing.assert_close(
            sparse[key], dense[key], msg=lambda m, k=key: f'{k}: {m}')
    assert sparse_grads.keys() == dense_grads.keys()
    # Equal up to float32 sums in another order (the mask head runs on
    # another number of slots), relative to each gradient's size.
    for key, dense_grad in dense_grads.items():
        error = (sparse_grads[key] - dense_grad).norm()
        assert error <= 1e-5 * dense_grad.norm() + 1e-8, key
    if max(num_gts):
        assert dense_grads['mask_head.conv3d.1.weight'].abs().sum() > 0


def test_every_slot_where_other_slots_read_their_masks():
    mask_matcher = dict(
        matcher=dict(
            type='InstanceSequenceMatcher',
            match_costs=[
                dict(type='SequenceClassificationCost', weight=1.),
                dict(type='SequenceDiceCost', weight=1.)
            ]))
    assert not _head(train_cfg=mask_matcher).masks_after_matching
    assert not _head(mask_pooling=True).masks_after_matching
    assert not _head(
        mask_shape_encoder=dict(type='MaskShapeEncoder')).masks_after_matching
