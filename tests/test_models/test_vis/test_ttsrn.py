"""The TTSRN model end to end on tiny widths (CPU)."""
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, TrackDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData
from tiny_models import tiny_head_cfg

import mmttsrn  # noqa: F401


def tiny_model_cfg(num_frames=3, num_classes=3, num_queries=2):
    head = tiny_head_cfg(
        num_classes=num_classes,
        num_frames=num_frames,
        num_queries=num_queries,
        conv3d_channels=(4, 4),
        loss_cls=dict(
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=1.0,
            bg_cls_weight=0.1))
    head['transformer']['num_encoder_layers'] = 2
    return dict(
        type='TTSRN',
        data_preprocessor=dict(
            type='TrackDataPreprocessor',
            mean=[0., 0., 0.],
            std=[1., 1., 1.],
            pad_mask=True,
            pad_size_divisor=32),
        backbone=dict(
            type='TwinsSVT',
            embed_dims=(8, 16, 32, 64),
            depths=(1, 1, 1, 1),
            num_heads=(1, 1, 2, 4)),
        track_head=head,
        test_cfg=dict(
            max_per_video=3,
            linker=dict(type='WindowLinker', overlap=2)))


def make_video(num_frames, h=64, w=96, num_classes=3, seed=0,
               absent=((1, 1), )):
    """A TrackDataSample with two instances moving across the frames.

    ``absent`` lists (instance, frame) pairs where the instance is missing.
    """
    frames = []
    for t in range(num_frames):
        boxes, labels, ids, masks = [], [], [], []
        for k in range(2):
            if (k, t) in absent:
                continue
            x0, y0 = 4 + 20 * k + t, 6 + 10 * k
            box = [x0, y0, x0 + 20, y0 + 16]
            mask = np.zeros((h, w), np.uint8)
            mask[y0:y0 + 16, x0:x0 + 20] = 1
            boxes.append(box)
            labels.append(k % num_classes)
            ids.append(100 + k)
            masks.append(mask)
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(h, w), ori_shape=(h, w), batch_input_shape=(h, w),
                pad_shape=(h, w), frame_id=t, img_id=t, video_id=seed))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
            labels=torch.tensor(labels, dtype=torch.long),
            instances_ids=torch.tensor(ids, dtype=torch.long),
            masks=BitmapMasks(
                np.stack(masks) if masks else np.zeros((0, h, w), np.uint8),
                h, w))
        frames.append(sample)
    video = TrackDataSample()
    video.video_data_samples = frames
    return torch.rand(num_frames, 3, h, w,
                      generator=torch.Generator().manual_seed(seed)), video


@pytest.fixture(scope='module')
def model3():
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg(num_frames=3))
    model.init_weights()
    return model


@pytest.mark.parametrize('batch', [1, 2])
@pytest.mark.parametrize('num_frames', [1, 3, 5])
def test_forward_shapes(batch, num_frames):
    model = MODELS.build(tiny_model_cfg(num_frames=num_frames))
    inputs = torch.rand(batch, num_frames, 3, 64, 96)
    outs = model._forward(inputs)
    assert outs['cls_scores'].shape == (2, batch, 2, num_frames, 4)
    assert outs['bbox_preds'].shape == (2, batch, 2, num_frames, 4)
    assert outs['mask_preds'].shape == (batch, 2, num_frames, 16, 24)
    assert ((outs['bbox_preds'] >= 0) & (outs['bbox_preds'] <= 1)).all()


def test_loss_backward_reaches_every_part(model3):
    data = [make_video(3, seed=s) for s in range(2)]
    inputs = torch.stack([d[0] for d in data])
    model3.train()
    losses = model3.loss(inputs, [d[1] for d in data])
    for name in ('loss_cls', 'loss_bbox', 'loss_iou', 'loss_mask',
                 'loss_dice', 'd0.loss_cls', 'd0.loss_bbox', 'd0.loss_iou'):
        assert torch.isfinite(losses[name]), name
    model3.zero_grad()
    sum(losses.values()).backward()
    for part in ('backbone', 'track_head.transformer',
                 'track_head.query_embed', 'track_head.cls_head',
                 'track_head.reg_head', 'track_head.mask_head',
                 'track_head.input_proj'):
        grads = [
            p.grad.abs().sum() for n, p in model3.named_parameters()
            if n.startswith(part) and p.grad is not None
        ]
        assert grads and sum(grads) > 0, part


def test_targets_align_instances_and_mark_absent_frames(model3):
    _, video = make_video(3, absent=((1, 1), ))
    target, = model3.track_head.get_targets([video], torch.device('cpu'))
    assert target['labels'].tolist() == [0, 1]
    assert target['valid'].tolist() == [[True, True, True],
                                        [True, False, True]]
    assert not target['masks'][1, 1].any()
    assert target['masks'][1, 0].sum() == 20 * 16
    # (cx, cy, w, h) normalised by the frame size
    torch.testing.assert_close(target['bboxes'][0, 0],
                               torch.tensor([14 / 96, 14 / 64, 20 / 96,
                                             16 / 64]))


def test_perfect_prediction_has_lower_loss_than_shuffled(model3):
    _, video = make_video(3)
    head = model3.track_head
    target, = head.get_targets([video], torch.device('cpu'))
    K, n, T = head.num_classes, head.num_queries, 3
    # slots 0..1 predict the two gt sequences exactly
    logits = torch.full((1, 1, n, T, K + 1), -10.)
    logits[0, 0, :, :, K] = 10.
    for g in range(2):
        frames = target['valid'][g]
        logits[0, 0, g, frames, K] = -10.
        logits[0, 0, g, frames, target['labels'][g]] = 10.
    boxes = torch.full((1, 1, n, T, 4), 0.5)
    boxes[0, 0, :2] = torch.where(target['valid'][..., None],
                                  target['bboxes'], boxes[0, 0, :2])
    masks = torch.full((1, n, T, 16, 24), -10.)
    small = torch.nn.functional.interpolate(
        target['masks'].float(), size=(16, 24))
    masks[0, :2] = small * 20 - 10

    def total(cls, box, mask):
        losses = head.loss_by_feat(cls, box, mask, [target])
        return sum(losses.values()).item()

    perfect = total(logits, boxes, masks)
    # shuffle frames and swap instance contents
    shuffled = total(logits.flip(3), boxes.flip(3), masks.flip(2))
    assert perfect < shuffled


def test_predict_short_video_pads_and_returns_every_frame(model3):
    inputs, video = make_video(2)
    model3.eval()
    with torch.no_grad():
        result, = model3.predict(inputs[None], [video])
    assert len(result) == 2
    for frame in result.video_data_samples:
        pred = frame.pred_track_instances
        # one window of n=2 slots gives 2 tracks (max_per_video is 3)
        assert pred.masks.shape == (2, 64, 96)
        assert pred.masks.dtype == torch.bool
        assert ((pred.scores >= 0) & (pred.scores <= 1)).all()
        assert (pred.labels < 3).all()


def test_query_content_and_input_norm_options():
    cfg = tiny_model_cfg(num_frames=3)
    cfg['track_head'].update(
        query_content=True, input_proj_norm=dict(type='GN', num_groups=8))
    model = MODELS.build(cfg)
    inputs, video = make_video(3)
    losses = model.loss(inputs[None], [video])
    sum(losses.values()).backward()
    head = model.track_head
    assert head.query_feat.weight.grad.abs().sum() > 0
    assert isinstance(head.input_proj.norm, torch.nn.GroupNorm)
    # slots start with different content, so their outputs differ at init
    outs = model._forward(inputs[None])
    assert outs['bbox_preds'][-1, 0].std(0).mean() > 0


def test_post_process_keeps_best_tracks_above_threshold(model3):
    """max_per_video best-scoring tracks above score_thr, best first."""
    _, video = make_video(2)
    # Track k has probability p_k for class k % 3 in both frames.
    probs = torch.tensor([0.3, 0.9, 0.1, 0.6, 0.8])
    cls_probs = torch.zeros(5, 2, 3)
    cls_probs[torch.arange(5), :, torch.arange(5) % 3] = probs[:, None]
    tracks = dict(
        cls_probs=cls_probs,
        bboxes=torch.full((5, 2, 4), 0.5),
        mask_probs=torch.ones(5, 2, 16, 24),
        covered=torch.ones(5, 2, dtype=torch.bool))
    saved = dict(model3.test_cfg)
    try:
        model3.test_cfg.update(score_thr=0.2, max_per_video=3)
        instances = model3._post_process(tracks, video, rescale=True)
        assert instances[0].instances_id.tolist() == [1, 4, 3]
        torch.testing.assert_close(instances[0].scores,
                                   torch.tensor([0.9, 0.8, 0.6]))
        assert instances[0].labels.tolist() == [1, 1, 0]
        # Fewer tracks than max_per_video above the threshold.
        model3.test_cfg.update(score_thr=0.7)
        instances = model3._post_process(tracks, video, rescale=True)
        assert instances[1].instances_id.tolist() == [1, 4]
        assert instances[1].masks.shape == (2, 64, 96)
        torch.testing.assert_close(instances[1].bboxes[0],
                                   torch.tensor([24., 16., 72., 48.]))
    finally:
        model3.test_cfg.clear()
        model3.test_cfg.update(saved)


def test_cpu_backbone_chunk_runs_the_backbone_on_chunks_of_frames(model3):
    """With ``cpu_backbone_chunk`` inference runs the backbone on at most
    that many frames per call, with the features of one call; training
    (autograd on) keeps one call per clip."""
    model3.eval()
    inputs, video = make_video(3)
    batches = []
    hook = model3.backbone.register_forward_pre_hook(
        lambda _, args: batches.append(len(args[0])))
    saved = dict(model3.test_cfg)
    try:
        with torch.no_grad():
            whole = model3.extract_clip_feat(inputs[None], torch.arange(3))
            (expected, ) = model3.predict(inputs[None], [video])
            model3.test_cfg['cpu_backbone_chunk'] = 2
            chunked = model3.extract_clip_feat(inputs[None], torch.arange(3))
            (result, ) = model3.predict(inputs[None], [video])
        assert batches == [3, 3, 2, 1, 2, 1]
        for a, b in zip(chunked, whole):
            torch.testing.assert_close(a, b)
        for a, b in zip(result.video_data_samples,
                        expected.video_data_samples):
            torch.testing.assert_close(a.pred_track_instances.scores,
                                       b.pred_track_instances.scores)
        batches.clear()
        model3.extract_clip_feat(inputs[None], torch.arange(3))
        assert batches == [3]
    finally:
        hook.remove()
        model3.test_cfg.clear()
        model3.test_cfg.update(saved)
    for bad in (0, 1.5):
        cfg = tiny_model_cfg(num_frames=3)
        cfg['test_cfg'] = dict(cpu_backbone_chunk=bad)
        with pytest.raises(ValueError, match='cpu_backbone_chunk'):
            MODELS.build(cfg)


def test_a_short_video_runs_each_distinct_frame_once_through_the_backbone(
        model3, monkeypatch):
    """A 2-frame video fills a 3-frame clip by repeating a frame: the
    backbone sees 2 frames, and the predictions are those of the full
    clip."""
    model3.eval()
    inputs, video = make_video(2)
    batches = []
    model3.backbone.register_forward_pre_hook(
        lambda _, args: batches.append(len(args[0])))
    with torch.no_grad():
        (once, ) = model3.predict(inputs[None], [video])
        once = [f.pred_track_instances for f in once.video_data_samples]
        monkeypatch.setattr(model3, 'extract_clip_feat',
                            lambda clip, inds: model3.extract_feat(clip))
        (every, ) = model3.predict(inputs[None], [video])
        every = [f.pred_track_instances for f in every.video_data_samples]
    model3.backbone._forward_pre_hooks.clear()
    assert batches == [2, 3]
    for a, b in zip(once, every):
        torch.testing.assert_close(a.scores, b.scores)
        torch.testing.assert_close(a.bboxes, b.bboxes)
        assert (a.masks == b.masks).float().mean() > 0.999
