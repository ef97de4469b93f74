"""Run a clip model over a video of any length and join its windows."""
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.registry import TASK_UTILS
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = ['WindowLinker', 'LinkStream']

_KEYS = ('cls_probs', 'bboxes', 'mask_probs')


@TASK_UTILS.register_module()
class WindowLinker:
    """Splits a video into clips and joins the clips' instance sequences.

    A video shorter than the clip is stretched to the clip length by
    repeating frames in time order; the repeated frames' predictions are
    averaged back onto their frame. A longer video runs in windows that
    overlap by ``overlap`` frames; the instances of a window are joined to the
    tracks found so far by Hungarian matching on their spatio-temporal mask
    IoU over the overlapping frames, so an instance keeps its id.

    :meth:`merge` joins the windows of a whole video at once, in dense
    (tracks, frames, h, w) buffers. :meth:`stream` gives a
    :class:`LinkStream` that takes the windows one at a time and hands back
    each frame as soon as no later window can see it, so that its memory
    does not grow with the video; it gives the same tracks as :meth:`merge`
    and, with ``reid_thr`` set, also re-identifies tracks that are absent or
    empty in the overlap frames by their query embedding.

    Args:
        overlap (int): Frames shared by consecutive windows.
        iou_thr (float): Minimum mask IoU to continue a track; below it the
            window's instance starts a new track.
        mask_thr (float): Probability above which a pixel is foreground.
        reid_thr (float, optional): Minimum cosine similarity between an
            unmatched instance's query embedding and the mean embedding of a
            track that is not visible in the overlap frames, to continue
            that track (streaming only, windows that carry ``embeds``).
            None (default) links by mask IoU only.
    """

    def __init__(self,
                 overlap: int = 1,
                 iou_thr: float = 0.1,
                 mask_thr: float = 0.5,
                 reid_thr: Optional[float] = None) -> None:
        if overlap < 0:
            raise ValueError(f'overlap must be >= 0, got {overlap}')
        self.overlap = overlap
        self.iou_thr = iou_thr
        self.mask_thr = mask_thr
        self.reid_thr = reid_thr

    def split(self, video_len: int, clip_len: int,
              device=None) -> List[Tensor]:
        """Frame indices of each window, each a LongTensor of ``clip_len``."""
        if video_len < 1:
            raise ValueError('cannot split an empty video (0 frames)')
        if video_len <= clip_len:
            return [
                torch.arange(clip_len, device=device) * video_len // clip_len
            ]
        self._check_overlap(clip_len)
        step = clip_len - self.overlap
        starts = list(range(0, video_len - clip_len + 1, step))
        if starts[-1] != video_len - clip_len:
            starts.append(video_len - clip_len)
        return [
            torch.arange(s, s + clip_len, device=device) for s in starts
        ]

    def windows(self, frames: Iterable,
                clip_len: int) -> Iterator[Tuple[Tensor, list, Optional[int]]]:
        """The windows of :meth:`split`, over frames read one at a time.

        The video's length need not be known: at most ``2 * clip_len``
        frames are held, reading ahead far enough to tell whether the next
        window is a regular one or the last, shifted one.

        Args:
            frames (Iterable): The video's frames (any objects), in order.
            clip_len (int): Frames per window, T.

        Yields:
            tuple: ``frame_inds`` (T,) LongTensor as :meth:`split` gives it,
            the T frames at those indices, and the first frame of the next
            window (None for the last window): every frame before it is
            seen by no later window.
        """
        frames = iter(frames)
        held: List = []  # frames first, first + 1, ...
        first = 0
        step = clip_len - self.overlap

        def read(upto: int) -> int:
            """Read until frame ``upto - 1`` is held; the frames read."""
            while first + len(held) < upto:
                frame = next(frames, _END)
                if frame is _END:
                    break
                held.append(frame)
            return first + len(held)

        video_len = read(clip_len)
        if video_len < clip_len or read(clip_len + 1) == clip_len:
            inds, = self.split(video_len, clip_len)
            yield inds, [held[i] for i in inds.tolist()], None
            return
        self._check_overlap(clip_len)
        start = 0
        while True:
            end = read(start + step + clip_len)
            inds = torch.arange(start, start + clip_len)
            window = held[start - first:start - first + clip_len]
            if end == start + step + clip_len:
                next_start = start + step
            elif end > start + clip_len:
                next_start = end - clip_len  # the last window, shifted
            else:
                yield inds, window, None
                return
            yield inds, window, next_start
            del held[:next_start - first]
            first = start = next_start

    def stream(self) -> 'LinkStream':
        """A fresh :class:`LinkStream` to link one video window by window."""
        return LinkStream(self)

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

    def _check_overlap(self, clip_len: int) -> None:
        if self.overlap >= clip_len:
            raise ValueError(f'overlap ({self.overlap}) must be smaller than '
                             f'the clip length ({clip_len})')

    @staticmethod
    def _fold(win: Dict[str, Tensor], video_len: int) -> Dict[str, Tensor]:
        """Sums of a window's outputs per video frame, and their counts."""
        inds = win['frame_inds']
        n = win['cls_probs'].shape[0]
        fold = dict()
        for key in _KEYS:
            value = win[key]
            fold[key] = value.new_zeros(n, video_len,
                                        *value.shape[2:]).index_add_(
                                            1, inds, value)
        ones = win['cls_probs'].new_ones(n, len(inds))
        fold['count'] = ones.new_zeros(n, video_len).index_add_(1, inds, ones)
        return fold

    def _binary(self, mask_sums: Tensor, count: Tensor) -> Tensor:
        """Foreground of averaged masks (R, F, h, w) as (R, F*h*w) floats."""
        probs = mask_sums / count.clamp(min=1)[..., None, None]
        return (probs > self.mask_thr).flatten(1).float()

    @staticmethod
    def _mask_iou(prev: Tensor, cur: Tensor) -> Tensor:
        """IoU (R, C), on the CPU, of binary masks (R, P) and (C, P)."""
        inter = prev @ cur.T
        union = prev.sum(1)[:, None] + cur.sum(1)[None] - inter
        return (inter / union.clamp(min=1)).cpu()

    def _assign(self, acc: Dict[str, Tensor],
                fold: Dict[str, Tensor]) -> Tensor:
        """Track index of each of the window's instances (new ones appended).
        """
        num_tracks, n = len(acc['count']), len(fold['count'])
        shared = (acc['count'] > 0).any(0) & (fold['count'] > 0).any(0)
        if not shared.any():
            return torch.arange(
                num_tracks, num_tracks + n, device=fold['count'].device)
        iou = self._mask_iou(
            self._binary(acc['mask_probs'][:, shared],
                         acc['count'][:, shared]),
            self._binary(fold['mask_probs'][:, shared],
                         fold['count'][:, shared]))
        rows, cols = _hungarian(iou, self.iou_thr)
        return _number(rows, cols, n, num_tracks).to(fold['count'].device)


class LinkStream:
    """One video's tracks, linked window by window in bounded memory.

    Only the frames that a later window still overlaps are kept, for the
    tracks that cover them: ``(m, F, ...)`` sums with m tracks and F frames
    at most about two windows' worth, whatever the video's length. Per track
    ever seen it keeps one embedding (d,) for re-identification.

    Args:
        linker (WindowLinker): Thresholds and overlap.
    """

    def __init__(self, linker: WindowLinker) -> None:
        self.linker = linker
        self.num_tracks = 0
        # Kept frames (F,), ascending, and the track of each kept row (m,).
        self.frames = torch.zeros(0, dtype=torch.long)
        self.rows = torch.zeros(0, dtype=torch.long)
        # cls_probs (m, F, K), bboxes (m, F, 4), mask_probs (m, F, h, w)
        # sums and count (m, F), as in ``WindowLinker.merge``.
        self.sums: Optional[Dict[str, Tensor]] = None
        # Per track: sum of its unit query embeddings (N, d) over the windows
        # where its mask is not empty.
        self.embeds: Optional[Tensor] = None

    def push(self,
             window: Dict[str, Tensor],
             next_start: Optional[int] = None) -> Dict[str, Tensor]:
        """Link one window and hand back the frames no later window sees.

        Args:
            window (dict): ``frame_inds`` (T,), ``cls_probs`` (n, T, K),
                ``bboxes`` (n, T, 4), ``mask_probs`` (n, T, h, w) and
                optionally ``embeds`` (n, d), each instance's query
                embedding.
            next_start (int, optional): First frame of the next window (as
                :meth:`WindowLinker.windows` gives it); None after the last
                window, which hands back every remaining frame.

        Returns:
            dict: The F finished frames, ``frame_inds`` (F,), and the m
            tracks that cover any of them, ``track_ids`` (m,) ascending,
            with ``cls_probs`` (m, F, K), ``bboxes`` (m, F, 4) and
            ``mask_probs`` (m, F, h, w) averaged over the windows that saw
            each frame, and ``covered`` (m, F) bool; each frame is handed
            back once, in order, exactly as ``WindowLinker.merge`` has it.
        """
        inds = window['frame_inds']
        device = inds.device
        frames, inverse = torch.unique(inds, return_inverse=True)
        n = window['cls_probs'].shape[0]
        fold = {
            key: window[key].new_zeros(n, len(frames),
                                       *window[key].shape[2:]).index_add_(
                                           1, inverse, window[key])
            for key in _KEYS
        }
        ones = window['cls_probs'].new_ones(n, len(inds))
        fold['count'] = ones.new_zeros(n, len(frames)).index_add_(
            1, inverse, ones)

        if self.sums is None:
            self.sums = {
                key: value[:0, :0]
                for key, value in fold.items()
            }
            self.frames, self.rows = self.frames.to(device), \
                self.rows.to(device)
        ids = self._assign(fold, frames, window.get('embeds'))
        self._add(fold, frames, ids)
        return self._finish(next_start)

    def _assign(self, fold: Dict[str, Tensor], frames: Tensor,
                embeds: Optional[Tensor]) -> Tensor:
        """Track id (n,) of each instance of the window: mask IoU over the
        shared frames, then (``reid_thr``) query embeddings."""
        linker = self.linker
        n = len(fold['count'])
        shared = torch.isin(self.frames, frames)
        in_window = torch.searchsorted(frames, self.frames[shared])
        prev = linker._binary(self.sums['mask_probs'][:, shared],
                              self.sums['count'][:, shared])
        cur = linker._binary(fold['mask_probs'][:, in_window],
                             fold['count'][:, in_window])
        if shared.any():
            # Rows for every track ever seen, as ``merge`` has them, so that
            # the assignment (ties included) is the same.
            iou = torch.zeros(self.num_tracks, n)
            iou[self.rows.cpu()] = linker._mask_iou(prev, cur)
            rows, cols = _hungarian(iou, linker.iou_thr)
        else:
            rows = cols = torch.zeros(0, dtype=torch.long)

        present = linker._binary(fold['mask_probs'], fold['count']).any(1)
        if embeds is not None and linker.reid_thr is not None:
            rows, cols = self._reidentify(rows, cols, prev.any(1), present,
                                          embeds)
        ids = _number(rows, cols, n, self.num_tracks).to(frames.device)
        self.num_tracks = max(self.num_tracks, int(ids.max()) + 1)
        if embeds is not None:
            unit = F.normalize(embeds.detach().float(), dim=-1).cpu()
            if self.embeds is None:
                self.embeds = unit.new_zeros(0, unit.shape[1])
            self.embeds = torch.cat([
                self.embeds,
                unit.new_zeros(self.num_tracks - len(self.embeds),
                               unit.shape[1])
            ])
            present_cpu = present.cpu()
            self.embeds.index_add_(0, ids.cpu()[present_cpu],
                                   unit[present_cpu])
        return ids

    def _reidentify(self, rows: Tensor, cols: Tensor, visible: Tensor,
                    present: Tensor,
                    embeds: Tensor) -> Tuple[Tensor, Tensor]:
        """Add (track, instance) pairs matched by query embedding.

        Candidates are the tracks left unmatched that have an embedding and
        no foreground in the shared frames (absent there, or empty), and
        the unmatched instances with foreground somewhere in the window.

        Args:
            rows, cols (Tensor): Pairs matched by mask IoU.
            visible (Tensor): (m,) bool, kept row has foreground in the
                shared frames.
            present (Tensor): (n,) bool, instance has foreground.
            embeds (Tensor): (n, d) the window's query embeddings.
        """
        if self.embeds is None:
            return rows, cols
        free_tracks = self.embeds.norm(dim=1) > 0
        free_tracks[rows] = False
        free_tracks[self.rows.cpu()[visible.cpu()]] = False
        free_insts = present.cpu().clone()
        free_insts[cols] = False
        tracks = free_tracks.nonzero()[:, 0]
        insts = free_insts.nonzero()[:, 0]
        if not len(tracks) or not len(insts):
            return rows, cols
        sim = F.normalize(self.embeds[tracks], dim=-1) @ F.normalize(
            embeds.detach().float().cpu()[insts], dim=-1).T
        r, c = _hungarian(sim, self.linker.reid_thr)
        return torch.cat([rows, tracks[r]]), torch.cat([cols, insts[c]])

    def _add(self, fold: Dict[str, Tensor], frames: Tensor,
             ids: Tensor) -> None:
        """Add the window's sums to the kept ones, growing rows and
        frames."""
        all_frames = torch.unique(torch.cat([self.frames, frames]))
        all_rows = torch.unique(torch.cat([self.rows, ids]))
        old_r = torch.searchsorted(all_rows, self.rows)[:, None]
        old_f = torch.searchsorted(all_frames, self.frames)[None]
        new_r = torch.searchsorted(all_rows, ids)[:, None]
        new_f = torch.searchsorted(all_frames, frames)[None]
        for key, value in fold.items():
            sums = value.new_zeros(len(all_rows), len(all_frames),
                                   *value.shape[2:])
            sums[old_r, old_f] = self.sums[key]
            # Rows and frames are unique, so this is old sum + window value
            # in one step, as ``merge`` adds them.
            sums[new_r, new_f] += value
            self.sums[key] = sums
        self.frames, self.rows = all_frames, all_rows

    def _finish(self, next_start: Optional[int]) -> Dict[str, Tensor]:
        """Hand back the frames before ``next_start`` and drop them."""
        done = self.frames < next_start if next_start is not None \
            else torch.ones_like(self.frames, dtype=torch.bool)
        count = self.sums['count'][:, done]
        rows = (count > 0).any(1)
        norm = count[rows].clamp(min=1)
        out = dict(
            frame_inds=self.frames[done],
            track_ids=self.rows[rows],
            cls_probs=self.sums['cls_probs'][rows][:, done] / norm[..., None],
            bboxes=self.sums['bboxes'][rows][:, done] / norm[..., None],
            mask_probs=self.sums['mask_probs'][rows][:, done] /
            norm[..., None, None],
            covered=count[rows] > 0)
        keep_rows = (self.sums['count'][:, ~done] > 0).any(1)
        self.sums = {
            key: value[keep_rows][:, ~done]
            for key, value in self.sums.items()
        }
        self.frames, self.rows = self.frames[~done], self.rows[keep_rows]
        return out


_END = object()


def _hungarian(score: Tensor, thr: float) -> Tuple[Tensor, Tensor]:
    """Rows and columns of the one-to-one pairs of ``score`` (R, C), CPU,
    of highest total, that score above ``thr``."""
    rows, cols = linear_sum_assignment(-score.numpy())
    rows, cols = torch.as_tensor(rows), torch.as_tensor(cols)
    keep = score[rows, cols] > thr
    return rows[keep], cols[keep]


def _number(rows: Tensor, cols: Tensor, n: int, num_tracks: int) -> Tensor:
    """Track id (n,) of each instance: ``rows[i]`` for instance
    ``cols[i]``, consecutive new ids from ``num_tracks`` for the others."""
    ids = torch.empty(n, dtype=torch.long)
    ids[cols] = rows
    new = torch.ones(n, dtype=torch.bool)
    new[cols] = False
    ids[new] = num_tracks + torch.arange(int(new.sum()))
    return ids
