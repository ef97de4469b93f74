"""Hungarian matching between predicted and ground-truth instance sequences.

Follows VisTR: a prediction is the same instance slot across the T frames of
a clip and is matched as a whole to one ground-truth instance sequence.
"""
import warnings
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.registry import TASK_UTILS
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .sequence_match_costs import BaseSequenceMatchCost

__all__ = ['InstanceSequenceMatcher']


# The keyword weights of before ``match_costs``, and the cost each became.
_OLD_WEIGHTS = dict(
    cls_weight='SequenceClassificationCost',
    l1_weight='SequenceBBoxL1Cost',
    giou_weight='SequenceIoUCost',
    mask_weight='SequenceCrossEntropyLossCost',
    dice_weight='SequenceDiceCost')


@TASK_UTILS.register_module()
class InstanceSequenceMatcher:
    """Instance-sequence Hungarian matcher (VisTR).

    The cost of pairing prediction i with ground truth g is the mean, over
    the frames where g is present, of the sum of the ``match_costs`` in that
    frame (:mod:`.sequence_match_costs`). The default is the paper's
    ``-1 * p_i,t(label_g) + 5 * mean|b_i,t - b_g,t| - 2 * GIoU(b_i,t,
    b_g,t)``, the L1 distance averaged over the 4 box coordinates as in
    VisTR and the TT-SRN reference code (mmdet's DETR sums them: its L1 cost
    is 4x larger for the same weight). Mask costs
    (``SequenceCrossEntropyLossCost``, ``SequenceDiceCost``: Mask2Former's)
    compare the predicted mask with the gt mask resized to the prediction,
    and enter where masks are given. Frames where g is absent do not enter
    its cost. A clip with more gt instances than slots matches as many as
    there are slots (those of least cost); the others go unsupervised, with
    a warning the first time.

    Args:
        match_costs (dict | list[dict], optional): Configs of the per-frame
            costs, as mmdet's ``HungarianAssigner``'s. Defaults to the
            paper's ``[dict(type='SequenceClassificationCost', weight=1.0),
            dict(type='SequenceBBoxL1Cost', weight=5.0),
            dict(type='SequenceIoUCost', iou_mode='giou', weight=2.0)]``.
    """

    def __init__(self,
                 match_costs: Union[dict, List[dict], None] = None,
                 **kwargs) -> None:
        for key, value in kwargs.items():
            if key in _OLD_WEIGHTS:
                raise TypeError(
                    f'InstanceSequenceMatcher takes match_costs instead of '
                    f'{key}: give match_costs=[..., dict(type='
                    f"'{_OLD_WEIGHTS[key]}', weight={value}), ...]")
            raise TypeError('InstanceSequenceMatcher got an unexpected '
                            f'keyword argument {key!r}')
        if match_costs is None:
            match_costs = [
                dict(type='SequenceClassificationCost', weight=1.0),
                dict(type='SequenceBBoxL1Cost', weight=5.0),
                dict(type='SequenceIoUCost', iou_mode='giou', weight=2.0)
            ]
        elif isinstance(match_costs, dict):
            match_costs = [match_costs]
        if not match_costs:
            raise ValueError('InstanceSequenceMatcher needs at least one '
                             'match cost')
        self.match_costs: List[BaseSequenceMatchCost] = [
            TASK_UTILS.build(cost) for cost in match_costs
        ]
        self._warned_crowded = False

    @staticmethod
    def _check_inputs(cls_scores: Tensor, bbox_preds: Tensor,
                      gt_labels: Tensor, gt_bboxes: Tensor,
                      gt_valid: Tensor) -> None:
        """Raise a ValueError naming the first inconsistent input."""
        if cls_scores.dim() != 3:
            raise ValueError('cls_scores must have shape (n, T, K + 1), got '
                             f'{tuple(cls_scores.shape)}')
        n, num_frames = cls_scores.shape[:2]
        m = gt_labels.shape[0]
        if bbox_preds.shape != (n, num_frames, 4):
            raise ValueError(f'bbox_preds must have shape ({n}, '
                             f'{num_frames}, 4) like cls_scores, got '
                             f'{tuple(bbox_preds.shape)}')
        if gt_bboxes.shape != (m, num_frames, 4):
            raise ValueError(f'gt_bboxes must have shape ({m}, {num_frames}, '
                             f'4) (m gt instances, T frames), got '
                             f'{tuple(gt_bboxes.shape)}')
        if gt_valid.shape != (m, num_frames):
            raise ValueError(f'gt_valid must have shape ({m}, {num_frames}),'
                             f' got {tuple(gt_valid.shape)}')
        empty = (~gt_valid.bool().any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f'ground-truth instance {empty[0]} is absent in '
                             'every frame of the clip (gt_valid all False)')

    @property
    def uses_masks(self) -> bool:
        """Whether the cost has mask terms (then pass the masks)."""
        return any(cost.needs_masks for cost in self.match_costs)

    @torch.no_grad()
    def cost(self,
             cls_scores: Tensor,
             bbox_preds: Tensor,
             gt_labels: Tensor,
             gt_bboxes: Tensor,
             gt_valid: Tensor,
             mask_preds: Optional[Tensor] = None,
             gt_masks: Optional[Tensor] = None) -> Tensor:
        """Matching cost between every prediction and ground-truth sequence.

        Args:
            cls_scores (Tensor): Class logits (n, T, K + 1).
            bbox_preds (Tensor): Normalised cxcywh boxes (n, T, 4).
            gt_labels (Tensor): Labels (m, ) in [0, K).
            gt_bboxes (Tensor): Normalised cxcywh boxes (m, T, 4).
            gt_valid (Tensor): Bool (m, T), False where the instance is
                absent from the frame.
            mask_preds (Tensor, optional): Mask logits (n, T, h, w).
            gt_masks (Tensor, optional): Masks (m, T, H, W), any size.

        Returns:
            Tensor: Cost matrix (n, m).
        """
        self._check_inputs(cls_scores, bbox_preds, gt_labels, gt_bboxes,
                           gt_valid)
        n, num_frames = cls_scores.shape[:2]
        m = gt_labels.shape[0]
        if m == 0:
            return cls_scores.new_zeros((n, 0))
        # float32 also under autocast: costs of near ties decide matches.
        preds = InstanceData(
            scores=cls_scores.float(), bboxes=bbox_preds.float())
        gts = InstanceData(labels=gt_labels, bboxes=gt_bboxes.float())
        with_masks = self.uses_masks and mask_preds is not None
        if with_masks:
            if gt_masks is None:
                raise ValueError('mask_preds given without gt_masks')
            preds.masks = mask_preds.float()
            # Area-averaged, so a gt pixel's share of each cell is kept.
            gts.masks = F.adaptive_avg_pool2d(gt_masks.float(),
                                              mask_preds.shape[-2:])
        frame_cost = preds.scores.new_zeros((n, m, num_frames))
        for match_cost in self.match_costs:
            if with_masks or not match_cost.needs_masks:
                frame_cost = frame_cost + match_cost(preds, gts)
        # where() rather than a product: absent frames may hold junk (even
        # non-finite) boxes that must not reach the mean.
        valid = gt_valid.bool()[None]
        frame_cost = torch.where(valid, frame_cost, frame_cost.new_zeros(()))
        return frame_cost.sum(-1) / valid.sum(-1)

    @torch.no_grad()
    def match(self,
              cls_scores: Tensor,
              bbox_preds: Tensor,
              gt_labels: Tensor,
              gt_bboxes: Tensor,
              gt_valid: Tensor,
              mask_preds: Optional[Tensor] = None,
              gt_masks: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Assign one prediction sequence to every ground-truth sequence.

        The arguments are those of :meth:`cost`.

        Returns:
            tuple[Tensor, Tensor]: ``(pred_inds, gt_inds)``, LongTensors of
            length min(n, m) on the input device, sorted by ``pred_inds``.
        """
        cost = self.cost(cls_scores, bbox_preds, gt_labels, gt_bboxes,
                         gt_valid, mask_preds, gt_masks)
        device = cls_scores.device
        if cost.shape[1] == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return empty, empty.clone()
        if cost.shape[1] > cost.shape[0] and not self._warned_crowded:
            warnings.warn(
                f'a clip has {cost.shape[1]} ground-truth instances but the '
                f'head has only {cost.shape[0]} instance slots; the extra '
                'instances are not supervised (raise num_queries to cover '
                'them). This warning is shown once.')
            self._warned_crowded = True
        pred_inds, gt_inds = linear_sum_assignment(cost.float().cpu().numpy())
        return (torch.as_tensor(pred_inds, dtype=torch.long, device=device),
                torch.as_tensor(gt_inds, dtype=torch.long, device=device))
