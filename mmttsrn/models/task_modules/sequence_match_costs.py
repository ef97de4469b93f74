"""Per-frame match costs of instance sequences, for
:class:`InstanceSequenceMatcher`'s ``match_costs``.

mmdet's match costs (``ClassificationCost``, ``BBoxL1Cost``, ``IoUCost``,
``CrossEntropyLossCost``, ``DiceCost``) compare every prediction with every
gt as a whole: (n, *) against (m, *) gives (n, m). An instance sequence's cost
is VisTR's mean over the frames where the gt is present, so these costs give
one cost per frame, (n, m, T), and the matcher takes the mean. Each one is
its mmdet namesake applied frame by frame, except the L1 cost, which is
averaged over the 4 box coordinates (VisTR and the TT-SRN reference code)
where mmdet's sums them.

Every cost is called as ``cost(pred_instances, gt_instances)`` with
float32 fields:

- ``pred_instances``: ``scores`` class logits (n, T, K + 1), ``bboxes``
  normalised cxcywh boxes (n, T, 4), ``masks`` mask logits (n, T, h, w);
- ``gt_instances``: ``labels`` (m, ) in [0, K), ``bboxes`` (m, T, 4),
  ``masks`` (m, T, h, w) in [0, 1], at the size of the predicted masks;

and returns its weighted cost (n, m, T). Absent frames may hold anything,
even non-finite boxes: the matcher leaves them out.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from mmengine.structures import InstanceData
from torch import Tensor

__all__ = [
    'BaseSequenceMatchCost', 'SequenceClassificationCost',
    'SequenceBBoxL1Cost', 'SequenceIoUCost', 'SequenceCrossEntropyLossCost',
    'SequenceDiceCost'
]


class BaseSequenceMatchCost:
    """A weighted per-frame cost between prediction and gt sequences.

    Args:
        weight (float): Cost weight. Defaults to 1.0.
    """

    #: Whether the cost reads ``masks`` (the matcher leaves it out when the
    #: caller gives no masks).
    needs_masks = False

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def __call__(self, pred_instances: InstanceData,
                 gt_instances: InstanceData) -> Tensor:
        """Weighted cost (n, m, T) of every prediction, gt and frame."""
        raise NotImplementedError


def _pairs(pred: Tensor, gt: Tensor) -> Tuple[Tensor, Tensor]:
    """(n, T, c) and (m, T, c) expanded to (n, m, T, c) each."""
    n, m = pred.shape[0], gt.shape[0]
    shape = (n, m, *pred.shape[1:])
    return pred[:, None].expand(shape), gt[None].expand(shape)


@TASK_UTILS.register_module()
class SequenceClassificationCost(BaseSequenceMatchCost):
    """Minus the softmax probability of the gt class in each frame
    (mmdet's ``ClassificationCost``)."""

    def __call__(self, pred_instances: InstanceData,
                 gt_instances: InstanceData) -> Tensor:
        prob = pred_instances.scores.softmax(-1)
        # (n, T, m) -> (n, m, T)
        cls_cost = -prob[..., gt_instances.labels.long()].permute(0, 2, 1)
        return cls_cost * self.weight


@TASK_UTILS.register_module()
class SequenceBBoxL1Cost(BaseSequenceMatchCost):
    """L1 distance of normalised cxcywh boxes, averaged over the 4
    coordinates (mmdet's ``BBoxL1Cost`` sums them: 4x this cost)."""

    def __call__(self, pred_instances: InstanceData,
                 gt_instances: InstanceData) -> Tensor:
        pred, gt = _pairs(pred_instances.bboxes, gt_instances.bboxes)
        return (pred - gt).abs().mean(-1) * self.weight


@TASK_UTILS.register_module()
class SequenceIoUCost(BaseSequenceMatchCost):
    """Minus the IoU or GIoU of the boxes in each frame (mmdet's
    ``IoUCost``).

    Args:
        iou_mode (str): 'iou' or 'giou'. Defaults to 'giou'.
        weight (float): Cost weight. Defaults to 1.0.
    """

    def __init__(self, iou_mode: str = 'giou', weight: float = 1.0) -> None:
        super().__init__(weight)
        if iou_mode not in ('iou', 'giou'):
            raise ValueError(f"iou_mode must be 'iou' or 'giou', got "
                             f'{iou_mode!r}')
        self.iou_mode = iou_mode

    def __call__(self, pred_instances: InstanceData,
                 gt_instances: InstanceData) -> Tensor:
        pred, gt = _pairs(pred_instances.bboxes, gt_instances.bboxes)
        overlaps = bbox_overlaps(
            bbox_cxcywh_to_xyxy(pred),
            bbox_cxcywh_to_xyxy(gt),
            mode=self.iou_mode,
            is_aligned=True)
        return -overlaps * self.weight


@TASK_UTILS.register_module()
class SequenceCrossEntropyLossCost(BaseSequenceMatchCost):
    """Sigmoid cross-entropy of each frame's mask logits against the gt
    mask, averaged over the pixels (mmdet's ``CrossEntropyLossCost`` with
    ``use_sigmoid=True``)."""

    needs_masks = True

    def __call__(self, pred_instances: InstanceData,
                 gt_instances: InstanceData) -> Tensor:
        logits = pred_instances.masks.flatten(2)  # (n, T, p)
        gt = gt_instances.masks.flatten(2)  # (m, T, p)
        # BCE(x, g) = softplus(-x) g + softplus(x) (1 - g), summed by einsum.
        pos, neg = F.softplus(-logits), F.softplus(logits)
        ce = (torch.einsum('ntp,mtp->nmt', pos, gt) +
              torch.einsum('ntp,mtp->nmt', neg, 1 - gt)) / logits.shape[-1]
        return ce * self.weight


@TASK_UTILS.register_module()
class SequenceDiceCost(BaseSequenceMatchCost):
    """Naive dice loss of each frame's sigmoid mask against the gt mask
    (mmdet's ``DiceCost`` with ``pred_act=True``).

    Args:
        eps (float): Added to the numerator and the denominator.
            Defaults to 1.0 (the ``loss_dice`` of the configs).
        weight (float): Cost weight. Defaults to 1.0.
    """

    needs_masks = True

    def __init__(self, eps: float = 1.0, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.eps = eps

    def __call__(self, pred_instances: InstanceData,
                 gt_instances: InstanceData) -> Tensor:
        prob = pred_instances.masks.flatten(2).sigmoid()  # (n, T, p)
        gt = gt_instances.masks.flatten(2)  # (m, T, p)
        inter = torch.einsum('ntp,mtp->nmt', prob, gt)
        total = prob.sum(-1)[:, None] + gt.sum(-1)[None]
        dice = 1 - (2 * inter + self.eps) / (total + self.eps)
        return dice * self.weight
