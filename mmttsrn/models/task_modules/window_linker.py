"""Run a clip model over a video of any length and join its windows."""
from typing import Dict, List

import torch
from mmdet.registry import TASK_UTILS
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = ['WindowLinker']


@TASK_UTILS.register_module()
class WindowLinker:
    """Splits a video into clips and joins the clips' instance sequences.

    A video shorter than the clip is stretched to the clip length by
    repeating frames in time order; the repeated frames' predictions are
    averaged back onto their frame. A longer video runs in windows that
    overlap by ``overlap`` frames; the instances of a window are joined to the
    tracks found so far by Hungarian matching on their spatio-temporal mask
    IoU over the overlapping frames, so an instance keeps its id.

    Args:
        overlap (int): Frames shared by consecutive windows.
        iou_thr (float): Minimum mask IoU to continue a track; below it the
            window's instance starts a new track.
        mask_thr (float): Probability above which a pixel is foreground.
    """

    def __init__(self,
                 overlap: int = 1,
                 iou_thr: float = 0.1,
                 mask_thr: float = 0.5) -> None:
        if overlap < 0:
            raise ValueError(f'overlap must be >= 0, got {overlap}')
        self.overlap = overlap
        self.iou_thr = iou_thr
        self.mask_thr = mask_thr

    def split(self, video_len: int, clip_len: int,
              device=None) -> List[Tensor]:
        """Frame indices of each window, each a LongTensor of ``clip_len``."""
        if video_len < 1:
            raise ValueError('cannot split an empty video (0 frames)')
        if video_len <= clip_len:
            return [
                torch.arange(clip_len, device=device) * video_len // clip_len
            ]
        if self.overlap >= clip_len:
            raise ValueError(f'overlap ({self.overlap}) must be smaller than '
                             f'the clip length ({clip_len})')
        step = clip_len - self.overlap
        starts = list(range(0, video_len - clip_len + 1, step))
        if starts[-1] != video_len - clip_len:
            starts.append(video_len - clip_len)
        return [
            torch.arange(s, s + clip_len, device=device) for s in starts
        ]

    def merge(self, windows: List[Dict[str, Tensor]],
              video_len: int) -> Dict[str, Tensor]:
        """Join the windows' instance sequences into video tracks.

        Args:
            windows (list[dict]): Per window: ``frame_inds`` (T,) video frame
                of each clip position, ``cls_probs`` (n, T, K),
                ``bboxes`` (n, T, 4) and ``mask_probs`` (n, T, h, w).
            video_len (int): Frames in the video, L.

        Returns:
            dict: for N tracks, ``cls_probs`` (N, L, K), ``bboxes``
            (N, L, 4) and ``mask_probs`` (N, L, h, w), averaged over the
            windows that saw each frame, and ``covered`` (N, L) bool, the
            frames where the track was predicted.
        """
        acc = None
        for win in windows:
            fold = self._fold(win, video_len)
            if acc is None:
                acc = fold
                continue
            assign = self._assign(acc, fold)
            num_new = int(assign.max()) + 1 - len(acc['count'])
            for key, value in fold.items():
                if num_new > 0:
                    acc[key] = torch.cat(
                        [acc[key], value.new_zeros(num_new, *value.shape[1:])])
                acc[key].index_add_(0, assign, value)
        count = acc.pop('count')
        norm = count.clamp(min=1)
        return dict(
            cls_probs=acc['cls_probs'] / norm[..., None],
            bboxes=acc['bboxes'] / norm[..., None],
            mask_probs=acc['mask_probs'] / norm[..., None, None],
            covered=count > 0)

    @staticmethod
    def _fold(win: Dict[str, Tensor], video_len: int) -> Dict[str, Tensor]:
        """Sums of a window's outputs per video frame, and their counts."""
        inds = win['frame_inds']
        n = win['cls_probs'].shape[0]
        fold = dict()
        for key in ('cls_probs', 'bboxes', 'mask_probs'):
            value = win[key]
            fold[key] = value.new_zeros(n, video_len,
                                        *value.shape[2:]).index_add_(
                                            1, inds, value)
        ones = win['cls_probs'].new_ones(n, len(inds))
        fold['count'] = ones.new_zeros(n, video_len).index_add_(1, inds, ones)
        return fold

    def _assign(self, acc: Dict[str, Tensor],
                fold: Dict[str, Tensor]) -> Tensor:
        """Track index of each of the window's instances (new ones appended).
        """
        num_tracks, n = len(acc['count']), len(fold['count'])
        shared = (acc['count'] > 0).any(0) & (fold['count'] > 0).any(0)
        ids = torch.arange(num_tracks, num_tracks + n,
                           device=fold['count'].device)
        if not shared.any():
            return ids

        def binary(state):
            probs = state['mask_probs'][:, shared]
            norm = state['count'][:, shared].clamp(min=1)[..., None, None]
            return (probs / norm > self.mask_thr).flatten(1).float()

        prev, cur = binary(acc), binary(fold)
        inter = prev @ cur.T
        union = prev.sum(1)[:, None] + cur.sum(1)[None] - inter
        iou = (inter / union.clamp(min=1)).cpu()
        rows, cols = linear_sum_assignment(-iou.numpy())
        keep = iou[rows, cols] > self.iou_thr
        rows = torch.as_tensor(rows, device=ids.device)[keep]
        cols = torch.as_tensor(cols, device=ids.device)[keep]
        ids[cols] = rows
        # Unmatched instances become new tracks with consecutive ids.
        new = torch.ones_like(ids, dtype=torch.bool)
        new[cols] = False
        ids[new] = num_tracks + torch.arange(
            int(new.sum()), device=ids.device)
        return ids
