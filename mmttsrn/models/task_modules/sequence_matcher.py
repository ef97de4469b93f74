"""Hungarian matching between predicted and ground-truth instance sequences.

Follows VisTR: a prediction is the same instance slot across the T frames of
a clip and is matched as a whole to one ground-truth instance sequence.
"""
import warnings
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = ['InstanceSequenceMatcher']


@TASK_UTILS.register_module()
class InstanceSequenceMatcher:
    """Instance-sequence Hungarian matcher (VisTR).

    The cost of pairing prediction i with ground truth g is the mean, over
    the frames where g is present, of
    ``-cls_weight * p_i,t(label_g) + l1_weight * mean|b_i,t - b_g,t|
    - giou_weight * GIoU(b_i,t, b_g,t)``, the L1 distance averaged over the
    4 box coordinates as in VisTR and the TT-SRN reference code (mmdet's
    DETR sums them: its L1 cost is 4x larger for the same weight).
    With ``mask_weight`` or ``dice_weight`` set and masks given, each frame's
    cost also has Mask2Former's mask terms: the mean sigmoid cross-entropy
    and the dice loss between the predicted mask and the gt mask resized to
    the prediction. Frames where g is absent do not enter its cost. A clip
    with more gt instances than slots matches as many as there are slots
    (those of least cost); the others go unsupervised, with a warning the
    first time.

    Args:
        cls_weight (float): Weight of the class cost. Defaults to 1.0.
        l1_weight (float): Weight of the L1 box cost. Defaults to 5.0.
        giou_weight (float): Weight of the GIoU cost. Defaults to 2.0.
        mask_weight (float): Weight of the mask cross-entropy cost, used
            where masks are given. Defaults to 0.0 (the paper).
        dice_weight (float): Weight of the dice cost, used where masks are
            given. Defaults to 0.0 (the paper).
    """

    def __init__(self,
                 cls_weight: float = 1.0,
                 l1_weight: float = 5.0,
                 giou_weight: float = 2.0,
                 mask_weight: float = 0.0,
                 dice_weight: float = 0.0) -> None:
        self.cls_weight = cls_weight
        self.l1_weight = l1_weight
        self.giou_weight = giou_weight
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
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
        return bool(self.mask_weight or self.dice_weight)

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
        # (n, T, m) -> (n, m, T): probability of each gt's class.
        # float32 also under autocast: costs of near ties decide matches.
        prob = cls_scores.float().softmax(-1)[..., gt_labels.long()]
        cls_cost = -prob.permute(0, 2, 1)
        pred = bbox_preds.float()[:, None].expand(n, m, num_frames, 4)
        gt = gt_bboxes.float()[None].expand(n, m, num_frames, 4)
        l1_cost = (pred - gt).abs().mean(-1)
        giou = bbox_overlaps(
            bbox_cxcywh_to_xyxy(pred),
            bbox_cxcywh_to_xyxy(gt),
            mode='giou',
            is_aligned=True)
        frame_cost = (
            self.cls_weight * cls_cost + self.l1_weight * l1_cost -
            self.giou_weight * giou)
        if self.uses_masks and mask_preds is not None:
            frame_cost = frame_cost + self._mask_cost(mask_preds, gt_masks)
        # where() rather than a product: absent frames may hold junk (even
        # non-finite) boxes that must not reach the mean.
        valid = gt_valid.bool()[None]
        frame_cost = torch.where(valid, frame_cost, frame_cost.new_zeros(()))
        return frame_cost.sum(-1) / valid.sum(-1)

    def _mask_cost(self, mask_preds: Tensor, gt_masks: Tensor) -> Tensor:
        """Weighted cross-entropy plus dice cost per frame, (n, m, T)."""
        logits = mask_preds.float().flatten(2)  # (n, T, p)
        # Area-averaged, so a gt pixel's share of each cell is kept.
        gt = F.adaptive_avg_pool2d(gt_masks.float(),
                                   mask_preds.shape[-2:]).flatten(2)
        num_pixels = logits.shape[-1]
        # BCE(x, g) = softplus(-x) g + softplus(x) (1 - g), summed by einsum.
        pos, neg = F.softplus(-logits), F.softplus(logits)
        ce = (torch.einsum('ntp,mtp->nmt', pos, gt) +
              torch.einsum('ntp,mtp->nmt', neg, 1 - gt)) / num_pixels
        prob = logits.sigmoid()
        inter = torch.einsum('ntp,mtp->nmt', prob, gt)
        total = prob.sum(-1)[:, None] + gt.sum(-1)[None]
        dice = 1 - (2 * inter + 1) / (total + 1)
        return self.mask_weight * ce + self.dice_weight * dice

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
