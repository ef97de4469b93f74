"""TTSRNHead's loss without host reads in the layer loop equals the former
loss (boolean indexing and ``.item()`` per layer), values and gradients;
the point-sampled mask losses are an option, off by default."""
import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from tiny_models import tiny_head_cfg

import mmttsrn  # noqa: F401
import mmttsrn.models.heads.ttsrn_head as head_module

K, N, T, H4 = 3, 3, 3, 4


def _head(**kwargs):
    return MODELS.build(
        tiny_head_cfg(
            num_classes=K,
            num_frames=T,
            num_queries=N,
            num_decoder_layers=3,
            **kwargs))


def _target(num_gts, gen):
    """``num_gts`` instances, each absent from some frames."""
    valid = torch.rand(num_gts, T, generator=gen) > 0.3
    valid[:, 0] = True
    xy = 0.2 + 0.6 * torch.rand(num_gts, T, 2, generator=gen)
    wh = 0.1 + 0.3 * torch.rand(num_gts, T, 2, generator=gen)
    bboxes = torch.cat([xy, wh], -1) * valid[..., None]
    masks = (torch.rand(num_gts, T, 4 * H4, 4 * H4, generator=gen) > 0.6) & \
        valid[..., None, None]
    return dict(
        labels=torch.randint(K, (num_gts, ), generator=gen),
        bboxes=bboxes,
        valid=valid,
        masks=masks)


def _outputs(num_videos, gen, mask_size=H4):
    L = 3
    return dict(
        cls_scores=torch.randn(L, num_videos, N, T, K + 1, generator=gen),
        bbox_preds=torch.rand(L, num_videos, N, T, 4, generator=gen) * 0.5 +
        0.1,
        mask_preds=torch.randn(
            num_videos, N, T, mask_size, mask_size, generator=gen),
        aux_mask_preds=torch.randn(
            L - 1, num_videos, N, T, mask_size, mask_size, generator=gen))


def _former_layer_losses(head, cls_scores, bbox_preds, mask_preds, targets,
                         matches, avg_factor):
    """The loss of one layer as computed before (commit f2870f0)."""
    B, n, T = cls_scores.shape[:3]
    batch_inds = torch.cat(
        [torch.full_like(p, b) for b, (p, _) in enumerate(matches)])
    slot_inds = torch.cat([p for p, _ in matches])
    gt_labels = torch.cat(
        [t['labels'][g] for t, (_, g) in zip(targets, matches)])
    gt_valid = torch.cat(
        [t['valid'][g] for t, (_, g) in zip(targets, matches)])
    gt_boxes = torch.cat(
        [t['bboxes'][g] for t, (_, g) in zip(targets, matches)])
    labels = torch.full((B, n, T), K, dtype=torch.long)
    labels[batch_inds, slot_inds] = torch.where(gt_valid, gt_labels[:, None],
                                                K)
    class_weight = torch.as_tensor(head.loss_cls.class_weight)
    losses = dict(
        loss_cls=head.loss_cls(
            cls_scores.flatten(0, 2),
            labels.flatten(),
            avg_factor=class_weight[labels].sum().clamp(min=1).item()))
    pred_boxes = bbox_preds[batch_inds, slot_inds][gt_valid]
    target_boxes = gt_boxes[gt_valid]
    losses['loss_bbox'] = head.loss_bbox(
        pred_boxes, target_boxes, avg_factor=avg_factor)
    losses['loss_iou'] = head.loss_iou(
        bbox_cxcywh_to_xyxy(pred_boxes),
        bbox_cxcywh_to_xyxy(target_boxes),
        avg_factor=avg_factor)
    if mask_preds is not None:
        pred_masks = mask_preds[batch_inds, slot_inds][gt_valid]
        gt_masks = torch.cat(
            [t['masks'][g] for t, (_, g) in zip(targets, matches)])
        gt_masks = gt_masks[gt_valid].flatten(1).float()
        pred_masks = F.interpolate(
            pred_masks[:, None],
            size=targets[0]['masks'].shape[-2:],
            mode='bilinear',
            align_corners=False).flatten(1)
        losses['loss_mask'] = head.loss_mask(
            pred_masks, gt_masks, avg_factor=avg_factor * gt_masks.shape[1])
        losses['loss_dice'] = head.loss_dice(
            pred_masks, gt_masks, avg_factor=avg_factor)
    return losses


def _former_losses(head, targets, cls_scores, bbox_preds, mask_preds,
                   aux_mask_preds):
    avg_factor = max(float(sum(int(t['valid'].sum()) for t in targets)), 1.)
    losses = {}
    last = cls_scores.shape[0] - 1
    for layer in range(last + 1):
        matches = [
            head.matcher.match(c, b, t['labels'], t['bboxes'], t['valid'])
            for c, b, t in zip(cls_scores[layer], bbox_preds[layer], targets)
        ]
        masks = mask_preds if layer == last else aux_mask_preds[layer]
        prefix = '' if layer == last else f'd{layer}.'
        for key, value in _former_layer_losses(head, cls_scores[layer],
                                               bbox_preds[layer], masks,
                                               targets, matches,
                                               avg_factor).items():
            losses[prefix + key] = value
    return losses


def _losses_and_grads(loss_fn, outputs):
    inputs = {k: v.clone().requires_grad_() for k, v in outputs.items()}
    losses = loss_fn(**inputs)
    total = sum(w * v for w, v in zip(
        torch.linspace(0.5, 2, len(losses)), (losses[k]
                                              for k in sorted(losses))))
    total.backward()
    return losses, {k: v.grad for k, v in inputs.items()}


# Videos with fewer gt instances than slots, as many, and more (then the
# matcher leaves some unmatched).
@pytest.mark.parametrize('num_gts', [(2, ), (1, 3), (2, 4), (0, 2)])
def test_loss_equals_the_former_per_layer_loss(num_gts):
    head = _head()
    gen = torch.Generator().manual_seed(sum(num_gts))
    targets = [_target(m, gen) for m in num_gts]
    outputs = _outputs(len(num_gts), gen)
    losses, grads = _losses_and_grads(
        lambda **o: head.loss_by_feat(targets=targets, **o), outputs)
    expected, expected_grads = _losses_and_grads(
        lambda **o: _former_losses(head, targets, **o), outputs)
    assert losses.keys() == expected.keys()
    assert 'd0.loss_mask' in losses
    for key, value in expected.items():
        # Up to the order of float32 sums.
        torch.testing.assert_close(losses[key], value, msg=key)
    for key, grad in expected_grads.items():
        torch.testing.assert_close(grads[key], grad, msg=key)


def test_no_host_reads_in_the_layer_loop(monkeypatch):
    head = _head()
    gen = torch.Generator().manual_seed(0)
    targets = [_target(2, gen), _target(3, gen)]
    outputs = _outputs(2, gen)
    reads = []
    for name in ('item', 'nonzero', 'tolist', '__bool__', '__int__',
                 '__float__'):
        original = getattr(torch.Tensor, name)

        def record(self, *args, _original=original, _name=name, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, record)
    gt_frames = head._gt_frames(targets)
    avg_factor = torch.tensor(float(len(gt_frames['frame'])))
    matches = [(torch.tensor([0, 2]), torch.tensor([1, 0])),
               (torch.tensor([0, 1, 2]), torch.tensor([2, 0, 1]))]
    reads.clear()
    head._loss_layer(outputs['cls_scores'][0], outputs['bbox_preds'][0],
                     outputs['mask_preds'], targets, matches, avg_factor,
                     gt_frames)
    assert reads == []


def test_point_sampled_mask_losses():
    gen = torch.Generator().manual_seed(0)
    targets = [_target(2, gen)]
    outputs = _outputs(1, gen)
    dense = _head()
    assert 'num_points' not in dense.train_cfg  # off by default
    sampled = _head(
        train_cfg=dict(
            matcher=dict(type='InstanceSequenceMatcher'), num_points=7))
    torch.manual_seed(0)
    losses, grads = _losses_and_grads(
        lambda **o: sampled.loss_by_feat(targets=targets, **o), outputs)
    dense_losses = dense.loss_by_feat(targets=targets, **outputs)
    assert losses.keys() == dense_losses.keys()
    for key, value in losses.items():
        assert value.shape == () and torch.isfinite(value), key
        if 'mask' not in key and 'dice' not in key:
            torch.testing.assert_close(value, dense_losses[key], msg=key)
    # Each present gt instance-frame's slot-frame gets a gradient from its
    # points, the others none.
    touched = grads['mask_preds'].abs().sum((-2, -1)).gt(0)
    assert touched.sum() == targets[0]['valid'].sum()
    assert grads['aux_mask_preds'].abs().sum() > 0


def test_point_sampled_losses_at_every_pixel_are_the_dense_losses(
        monkeypatch):
    """Read at the centre of every gt pixel, masks at the input size (as
    ``mask_upsample`` gives them) have the dense losses."""
    size = 4 * H4
    centres = (torch.arange(size) + 0.5) / size
    ys, xs = torch.meshgrid(centres, centres, indexing='ij')
    points = torch.stack([xs, ys], -1).view(1, -1, 2)  # (x, y) in [0, 1]
    monkeypatch.setattr(
        head_module, 'get_uncertain_point_coords_with_randomness',
        lambda preds, labels, num_points, *ratios: points.expand(
            len(preds), num_points, 2))
    gen = torch.Generator().manual_seed(2)
    targets = [_target(2, gen), _target(1, gen)]
    outputs = _outputs(2, gen, mask_size=size)
    sampled = _head(
        train_cfg=dict(
            matcher=dict(type='InstanceSequenceMatcher'),
            num_points=size * size))
    losses, grads = _losses_and_grads(
        lambda **o: sampled.loss_by_feat(targets=targets, **o), outputs)
    expected, expected_grads = _losses_and_grads(
        lambda **o: _head().loss_by_feat(targets=targets, **o), outputs)
    for key, value in expected.items():
        torch.testing.assert_close(losses[key], value, msg=key)
    for key, grad in expected_grads.items():
        torch.testing.assert_close(grads[key], grad, msg=key)


def test_point_sampled_losses_take_fine_masks():
    """Masks at the input size (``mask_upsample``) are sampled alike."""
    gen = torch.Generator().manual_seed(1)
    targets = [_target(2, gen)]
    outputs = _outputs(1, gen, mask_size=4 * H4)
    head = _head(
        train_cfg=dict(
            matcher=dict(type='InstanceSequenceMatcher'), num_points=9))
    losses, grads = _losses_and_grads(
        lambda **o: head.loss_by_feat(targets=targets, **o), outputs)
    assert torch.isfinite(torch.stack(list(losses.values()))).all()
    assert grads['mask_preds'].abs().sum() > 0
