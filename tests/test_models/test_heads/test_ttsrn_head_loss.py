"""TTSRNHead's set loss against a hand computation, and its config checks."""
import math

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, TrackDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData
from tiny_models import tiny_head_cfg

import mmttsrn  # noqa: F401


def _head(num_classes=2, **kwargs):
    return MODELS.build(tiny_head_cfg(num_classes=num_classes, **kwargs))


def _bce(logit, target):
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p)), p


def test_two_slot_loss_equals_hand_computation():
    head = _head()
    K = 2
    # One gt instance of class 1, present in both frames; slot 1 predicts its
    # boxes exactly, so the matcher must give it slot 1.
    gt_box = torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.4, 0.5, 0.4, 0.2]])
    gt_masks = torch.zeros(1, 2, 2, 2, dtype=torch.bool)
    gt_masks[0, 0, 0, 0] = gt_masks[0, 1, 1, 1] = True
    target = dict(
        labels=torch.tensor([1]),
        bboxes=gt_box[None],
        valid=torch.ones(1, 2, dtype=torch.bool),
        masks=gt_masks)
    cls = torch.tensor([[[0.2, -0.1, 0.3], [0.0, 0.5, -0.4]],
                        [[0.1, 0.9, -0.2], [-0.3, 1.2, 0.1]]])  # (n, T, 3)
    cls_scores = torch.stack([cls, cls * 2])[:, None]  # (L=2, B=1, n, T, 3)
    boxes = torch.stack([
        torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.1, 0.1]]),
        gt_box + torch.tensor([[0.02, 0.0, 0.0, 0.0], [0.0, 0.0, 0.04,
                                                       0.0]])
    ])
    bbox_preds = torch.stack([boxes, boxes])[:, None]
    mask_logits = torch.tensor([[[1.0, -1.0], [0.5, -2.0]],
                                [[-0.5, 0.2], [0.3, 2.0]]])  # (T, 2, 2)
    mask_preds = torch.zeros(1, 2, 2, 2, 2)
    mask_preds[0, 1] = mask_logits

    losses = head.loss_by_feat(cls_scores, bbox_preds, mask_preds, [target])

    assert set(losses) == {
        'loss_cls', 'loss_bbox', 'loss_iou', 'loss_mask', 'loss_dice',
        'd0.loss_cls', 'd0.loss_bbox', 'd0.loss_iou'
    }
    # Class: slot 0 is no-object (index K, weight 0.1) in both frames,
    # slot 1 is class 1 (weight 1); weighted mean over the 4 slot-frames.
    for key, scale in (('d0.loss_cls', 1.0), ('loss_cls', 2.0)):
        num = den = 0.0
        for slot in range(2):
            for t in range(2):
                logits = [scale * v for v in cls[slot, t].tolist()]
                label = K if slot == 0 else 1
                weight = 0.1 if label == K else 1.0
                ce = math.log(sum(math.exp(v) for v in logits)) - logits[label]
                num += weight * ce
                den += weight
        assert losses[key].item() == pytest.approx(num / den, rel=1e-5)
    # Boxes of slot 1, normalised by the 2 gt instance-frames.
    l1 = (0.02 + 0.04) / 2
    assert losses['loss_bbox'].item() == pytest.approx(5.0 * l1, rel=1e-4)

    def giou(a, b):
        ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, \
            a[0] + a[2] / 2, a[1] + a[3] / 2
        bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, \
            b[0] + b[2] / 2, b[1] + b[3] / 2
        inter = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(
            0, min(ay1, by1) - max(ay0, by0))
        union = a[2] * a[3] + b[2] * b[3] - inter
        hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) -
                                                  min(ay0, by0))
        return inter / union - (hull - union) / hull

    iou_loss = sum(1 - giou(boxes[1, t].tolist(), gt_box[t].tolist())
                   for t in range(2)) / 2
    assert losses['loss_iou'].item() == pytest.approx(
        2.0 * iou_loss, rel=1e-4)
    # Masks: sigmoid focal (alpha 0.25, gamma 2) summed over pixels and
    # divided by (instance-frames * pixels); naive dice (eps 1) per mask,
    # divided by the instance-frames.
    focal = dice = 0.0
    for t in range(2):
        inter = psum = gsum = 0.0
        for y in range(2):
            for x in range(2):
                g = float(gt_masks[0, t, y, x])
                bce, p = _bce(mask_logits[t, y, x].item(), g)
                pt = (1 - p) * g + p * (1 - g)
                focal += bce * (0.25 * g + 0.75 * (1 - g)) * pt**2
                inter, psum, gsum = inter + p * g, psum + p, gsum + g
        dice += 1 - (2 * inter + 1) / (psum + gsum + 1)
    assert losses['loss_mask'].item() == pytest.approx(
        focal / (2 * 4), rel=1e-4)
    assert losses['loss_dice'].item() == pytest.approx(dice / 2, rel=1e-4)


def test_class_weights_follow_num_classes():
    head = _head(num_classes=7)
    assert head.loss_cls.class_weight == [1.0] * 7 + [0.1]
    head = _head(
        num_classes=3,
        loss_cls=dict(
            type='CrossEntropyLoss', bg_cls_weight=0.2, class_weight=2.0))
    assert head.loss_cls.class_weight == [2.0] * 3 + [0.2]
    with pytest.raises(ValueError, match='num_classes=3 needs 4'):
        _head(
            num_classes=3,
            loss_cls=dict(
                type='CrossEntropyLoss', class_weight=[1.0] * 5 + [0.1]))


def _video(labels, h=32, w=32):
    frames = []
    for t in range(2):
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(h, w), batch_input_shape=(h, w), video_id=7))
        masks = np.zeros((len(labels), h, w), np.uint8)
        masks[:, 4:12, 4:12] = 1
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[4., 4., 12., 12.]] * len(labels)),
            labels=torch.tensor(labels),
            instances_ids=torch.arange(len(labels)),
            masks=BitmapMasks(masks, h, w))
        frames.append(sample)
    video = TrackDataSample()
    video.video_data_samples = frames
    return video


def test_labels_outside_num_classes_are_refused():
    head = _head(num_classes=2)
    head.get_targets([_video([0, 1])], torch.device('cpu'))
    with pytest.raises(ValueError, match='video 7 has gt labels .* 2'):
        head.get_targets([_video([0, 2])], torch.device('cpu'))


def test_mask_pooling_averages_features_under_each_slot_mask():
    head = _head(mask_pooling=True)
    feat = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).view(2, 3, 4, 4)
    logits = torch.full((1, 2, 2, 4, 4), -30.)
    logits[0, 0, :, :2, :2] = 30.  # slot 0: top-left 2x2 in both frames
    logits[0, 1, 1, 3, 3] = 30.  # slot 1: one pixel, frame 1 only
    pooled = head._mask_pool(logits, feat)  # (B, n, T, C)
    torch.testing.assert_close(pooled[0, 0, 1],
                               feat[1, :, :2, :2].mean((-2, -1)))
    torch.testing.assert_close(pooled[0, 1, 1], feat[1, :, 3, 3])
    # An empty mask pools (almost) nothing rather than dividing by ~0.
    assert pooled[0, 1, 0].abs().max() < 1e-6


def test_cross_attn_mask_keeps_each_slot_to_its_masks():
    B, n, T, h, w = 1, 3, 2, 2, 2
    logits = torch.full((B, n, T, 2 * h, 2 * w), -10.)
    logits[0, 0, 0, :2, :2] = 10.  # slot 0: token (0, 0) of frame 0
    logits[0, 1, 1, 2:, 2:] = 10.  # slot 1: token (1, 1) of frame 1
    token_mask = torch.zeros(B, T * h * w, dtype=torch.bool)
    token_mask[0, 3] = True  # a padded token
    blocked = _head()._cross_attn_mask(logits, token_mask, (h, w))
    assert blocked.shape == (B, T * n, T * h * w)
    seen = (~blocked[0]).view(T, n, T * h * w)
    # Query t*n+j is slot j: the same tokens in every frame t.
    for t in range(T):
        assert seen[t, 0].nonzero().flatten().tolist() == [0]
        assert seen[t, 1].nonzero().flatten().tolist() == [7]
        # Slot 2's mask is empty: it sees every token but the padded one.
        assert seen[t, 2].tolist() == [True] * 3 + [False] + [True] * 4


def test_masked_attention_supervises_every_layer_with_one_assignment():
    with pytest.raises(ValueError, match='pixel_embed'):
        _head(masked_attention=True)
    head = _head(
        masked_attention=True,
        pixel_embed=True,
        train_cfg=dict(
            matcher=dict(
                type='InstanceSequenceMatcher',
                match_costs=[
                    dict(type='SequenceClassificationCost', weight=1.),
                    dict(type='SequenceDiceCost', weight=1.)
                ]),
            share_matching=True))
    head.init_weights()
    torch.manual_seed(0)
    feats = [torch.randn(2, c, 32 // s, 32 // s)
             for c, s in zip([8, 16, 32, 64], [4, 8, 16, 32])]
    pad_mask = torch.zeros(1, 2, 32, 32, dtype=torch.bool)
    outs = head(feats, pad_mask)
    assert outs['aux_mask_preds'].shape == (1, 1, 2, 2, 8, 8)
    calls = []
    match = head.matcher.match
    head.matcher.match = lambda *args: calls.append(args) or match(*args)
    losses = head.loss(feats, pad_mask, [_video([0, 1])])
    # One matching, on the last layer's masks, serves both layers.
    assert len(calls) == 1 and calls[0][5] is not None
    assert {'loss_dice', 'd0.loss_dice', 'd0.loss_mask'} <= set(losses)
    total = sum(v for v in losses.values())
    total.backward()
    assert head.mask_head.mask_embed[0].weight.grad.abs().sum() > 0


def test_fine_masks_and_shape_embedding_options():
    torch.manual_seed(0)
    head = _head(
        mask_upsample=dict(type='ConvexUpsample'),
        mask_shape_encoder=dict(type='MaskShapeEncoder', size=8))
    head.init_weights()
    feats = [torch.randn(2, c, 32 // s, 32 // s)
             for c, s in zip([8, 16, 32, 64], [4, 8, 16, 32])]
    pad_mask = torch.zeros(1, 2, 32, 32, dtype=torch.bool)
    outs = head(feats, pad_mask)
    # Masks at the input size (stride 4 without mask_upsample).
    assert outs['mask_preds'].shape == (1, 2, 2, 32, 32)
    assert head.predict(feats, pad_mask)[0]['mask_probs'].shape == \
        (2, 2, 32, 32)
    losses = head.loss(feats, pad_mask, [_video([0, 1])])
    sum(losses.values()).backward()
    # The class loss reaches the shape encoder; the up-sampling weights
    # learn from the mask losses.
    assert head.mask_shape_encoder.fc.weight.grad.abs().sum() > 0
    assert head.mask_upsample.weight_net[-1].weight.grad.abs().sum() > 0
    # Only the last layer reads the masks.
    plain = _head().eval()
    plain.load_state_dict(head.state_dict(), strict=False)
    plain_outs = plain(feats, pad_mask)
    outs = head.eval()(feats, pad_mask)
    assert torch.equal(plain_outs['cls_scores'][0], outs['cls_scores'][0])
    assert not torch.equal(plain_outs['cls_scores'][-1],
                           outs['cls_scores'][-1])
