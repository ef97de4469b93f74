"""The tracks of one video, gathered as the linker hands its frames back."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample, TrackDataSample
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.structures import InstanceData
from torch import Tensor

__all__ = ['VideoTracks']


class VideoTracks:
    """Scores, categories and per-frame masks of the tracks of one video.

    :meth:`add` takes the frames a :class:`LinkStream` hands back: their
    boxes are turned into pixels and each track's sums for its score and
    category grow. With ``stream_rle`` their masks are turned into RLE at
    the output size and the stride-4 probabilities dropped, so memory holds
    one frame's up-sampled masks at a time, and per frame only the RLE and
    box of each track: for long videos read lazily. Without it the stride-4
    probabilities are kept where they are (e.g. on the GPU) and
    :meth:`instances` up-samples only the kept tracks' masks, on that
    device: no RLE round trip through the host, the same masks.

    Once every frame is in, the tracks are ranked as TT-SRN ranks them (see
    :class:`TTSRN`): one category per track, the majority vote over the
    frames it covers, scored by the mean over those frames of the highest
    class probability; or, with ``multi_label``, every (track, category)
    pair scored by the category's mean probability. Tracks without a mask
    in any covered frame are dropped, then the best ``max_per_video`` above
    ``score_thr`` are kept. With ``drop_absent_frames``, a track covers only
    the frames where its class probabilities sum to 0.5 or more.

    Args:
        num_classes (int): Categories K.
        test_cfg (dict): ``mask_thr``, ``score_thr``, ``max_per_video``,
            ``multi_label`` and ``drop_absent_frames``.
        frames (Sequence[DetDataSample]): The video's frame samples; the
            first must hold ``img_shape``, ``batch_input_shape`` and
            ``ori_shape`` by the first :meth:`add` (the list may grow while
            the video is read).
        rescale (bool): Masks and boxes at the original frame size, else at
            the network input size.
        stream_rle (bool): Encode each frame's masks as it is added (see
            above). Default True.
    """

    # Without stream_rle, data_sample() up-samples the masks of as many
    # frames at once as fit this many bytes of float32 at the output size.
    upsample_bytes = 2**28

    def __init__(self,
                 num_classes: int,
                 test_cfg: dict,
                 frames: Sequence[DetDataSample],
                 rescale: bool,
                 stream_rle: bool = True) -> None:
        self.num_classes = num_classes
        self.test_cfg = test_cfg
        self.frames = frames
        self.rescale = rescale
        self.stream_rle = stream_rle
        # Per frame, with stream_rle: track id -> (RLE, or None when empty;
        # x1y1x2y2 box); else (chunk, frame's index in it) into _chunks, the
        # added chunks' tensors.
        self._outputs: List[Union[Dict[int, Tuple[Optional[dict],
                                                  np.ndarray]],
                                  Tuple[int, int]]] = []
        self._chunks: List[Dict[str, Tensor]] = []
        # Per track: frames it covers, and sums over them of its highest
        # class probability, category votes and class probabilities.
        self._num_covered = torch.zeros(0, dtype=torch.long)
        self._max_prob_sum = torch.zeros(0, dtype=torch.float64)
        self._votes = torch.zeros(0, num_classes, dtype=torch.long)
        self._prob_sum = torch.zeros(0, num_classes, dtype=torch.float64)
        self._has_mask = torch.zeros(0, dtype=torch.bool)
        self._kept: Optional[Dict[str, Tensor]] = None
        self._kept_on_device: Optional[Dict[str, Tensor]] = None
        self._empty: Optional[dict] = None

    def __len__(self) -> int:
        """Frames added so far."""
        return len(self._outputs)

    @property
    def num_tracks(self) -> int:
        return len(self._num_covered)

    def _sizes(self) -> Tuple[Tuple[int, int], ...]:
        """Network input (h, w) without and with padding, output (h, w)."""
        frame0 = self.frames[0]
        img = tuple(frame0.img_shape[:2])
        pad = tuple(frame0.batch_input_shape)
        out = tuple(frame0.ori_shape[:2]) if self.rescale else img
        return img, pad, out

    def add(self, chunk: Dict[str, Tensor]) -> None:
        """Add the next finished frames.

        Args:
            chunk (dict): As :meth:`LinkStream.push` returns it: F frames
                ``frame_inds`` (F,), which must follow the frames added
                before, and m tracks ``track_ids`` (m,) with ``cls_probs``
                (m, F, K), ``bboxes`` (m, F, 4) normalised cxcywh,
                ``mask_probs`` (m, F, h4, w4) and ``covered`` (m, F).
        """
        inds = chunk['frame_inds'].tolist()
        if inds != list(range(len(self), len(self) + len(inds))):
            raise ValueError(f'frames {inds} do not follow the {len(self)} '
                             'frames added before')
        if not inds:
            return
        self._kept = self._kept_on_device = None
        ids = chunk['track_ids'].cpu()
        self._grow(int(ids.max()) + 1 if len(ids) else 0)
        covered = chunk['covered']
        probs = chunk['cls_probs']
        if self.test_cfg.get('drop_absent_frames', False):
            covered = covered & (probs.sum(-1) >= 0.5)
        mask_thr = self.test_cfg['mask_thr']
        max_probs, frame_labels = probs.max(-1)
        votes = F.one_hot(frame_labels, self.num_classes) * covered[..., None]
        has_mask = ((chunk['mask_probs'] > mask_thr).flatten(2).any(-1)
                    & covered).any(1)
        # Track ids are unique in a chunk, so += adds once per track.
        self._num_covered[ids] += covered.sum(1).cpu()
        self._max_prob_sum[ids] += (max_probs * covered).sum(1).cpu().double()
        self._votes[ids] += votes.sum(1).cpu()
        self._prob_sum[ids] += (probs *
                                covered[..., None]).sum(1).cpu().double()
        self._has_mask[ids] |= has_mask.cpu()

        _, _, (out_h, out_w) = self._sizes()
        bboxes = bbox_cxcywh_to_xyxy(chunk['bboxes']) * probs.new_tensor(
            [out_w, out_h, out_w, out_h])
        if not self.stream_rle:
            self._outputs.extend(
                (len(self._chunks), f) for f in range(len(inds)))
            self._chunks.append(
                dict(
                    track_ids=chunk['track_ids'],
                    mask_probs=chunk['mask_probs'],
                    covered=covered,
                    linked=chunk['covered'],
                    bboxes=bboxes.float()))
            return
        bboxes = bboxes.float().cpu().numpy()  # numpy has no bf16
        linked = chunk['covered'].cpu()
        for f in range(len(inds)):
            # One frame at a time: (m, out_h, out_w) at most.
            frame = slice(f, f + 1)
            masks = self._upsample(chunk['mask_probs'][:, frame],
                                   covered[:, frame])[:, 0]
            masks = masks.cpu().numpy()
            rles = mask_util.encode(
                np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
            self._outputs.append({
                int(i): (rle if mask.any() else None, bboxes[j, f])
                for j, (i, rle, mask) in enumerate(zip(ids, rles, masks))
                if linked[j, f]
            })

    def _upsample(self, mask_probs: Tensor, covered: Tensor) -> Tensor:
        """Masks (m, F, h4, w4) of F frames -> (m, F, out_h, out_w) bool at
        the output size, empty where ``covered`` (m, F) is False."""
        (img_h, img_w), pad, out = self._sizes()
        masks = mask_probs
        if masks.numel():
            # The frames are channels: bilinear resizing treats each alike.
            masks = F.interpolate(
                masks, size=pad, mode='bilinear',
                align_corners=False)[..., :img_h, :img_w]
            # A bilinear resize to the same size copies: skip it (e.g.
            # without rescale, or frames the pipeline did not resize).
            if out != (img_h, img_w):
                masks = F.interpolate(
                    masks, size=out, mode='bilinear', align_corners=False)
        else:
            masks = masks.new_zeros(*masks.shape[:2], *out)
        masks = masks > self.test_cfg['mask_thr']
        return masks & covered[..., None, None]

    def _grow(self, num_tracks: int) -> None:
        extra = num_tracks - self.num_tracks
        if extra <= 0:
            return
        for name in ('_num_covered', '_max_prob_sum', '_votes', '_prob_sum',
                     '_has_mask'):
            value = getattr(self, name)
            zeros = value.new_zeros(extra, *value.shape[1:])
            setattr(self, name, torch.cat([value, zeros]))

    @property
    def kept(self) -> Dict[str, Tensor]:
        """The reported instances, best first: ``scores`` (k,), ``labels``
        (k,), ``instances_id`` (k,) and ``tracks`` (k,), the track of each
        (with ``multi_label`` an instance is a (track, category) pair, whose
        id is ``track * K + category``)."""
        if self._kept is not None:
            return self._kept
        num_covered = self._num_covered.clamp(min=1)
        if self.test_cfg.get('multi_label', False):
            scores = (self._prob_sum / num_covered[:, None]).float().flatten()
            labels = torch.arange(self.num_classes).repeat(self.num_tracks)
            tracks = torch.arange(self.num_tracks).repeat_interleave(
                self.num_classes)
        else:
            scores = (self._max_prob_sum / num_covered).float()
            labels = self._votes.argmax(1)
            tracks = torch.arange(self.num_tracks)
        has_mask = self._has_mask[tracks]
        ranked = scores.masked_fill(~has_mask, -1)
        order = ranked.argsort(descending=True, stable=True)
        order = order[:self.test_cfg['max_per_video']]
        keep = order[(ranked[order] > self.test_cfg['score_thr'])
                     & has_mask[order]]
        self._kept = dict(
            scores=scores[keep],
            labels=labels[keep],
            instances_id=keep,
            tracks=tracks[keep])
        return self._kept

    def instances(self, t: int, encode: bool = False) -> InstanceData:
        """The kept instances in frame ``t``: on the CPU with ``stream_rle``,
        else on the device of the added masks.

        Args:
            t (int): Frame index.
            encode (bool): Masks as a list of RLE dicts (pycocotools'),
                else a (k, H, W) bool tensor.

        Returns:
            InstanceData: ``masks``, ``bboxes`` (k, 4) x1y1x2y2 in pixels,
            ``scores``, ``labels`` and ``instances_id``; a track that does
            not cover frame ``t`` has an empty mask there (and a zero box
            where the linker did not predict it).
        """
        kept = self.kept
        if not self.stream_rle:
            chunk, f = self._outputs[t]
            return self._instances_from_probs(chunk, slice(f, f + 1), kept,
                                              encode)[0]
        outputs = self._outputs[t]
        _, _, (out_h, out_w) = self._sizes()
        empty = (None, np.zeros(4, np.float32))
        found = [outputs.get(int(i), empty) for i in kept['tracks']]
        rles = [rle for rle, _ in found]
        bboxes = torch.from_numpy(
            np.array([box for _, box in found], np.float32).reshape(-1, 4))
        if encode:
            # Copies: consumers such as mmdet's metric edit them in place.
            masks = [dict(rle or self._empty_rle()) for rle in rles]
        else:
            masks = torch.zeros(len(rles), out_h, out_w, dtype=torch.bool)
            present = [j for j, rle in enumerate(rles) if rle is not None]
            if present:
                # One call for all of them, (out_h, out_w, k): a third less
                # time than one call per mask.
                decoded = mask_util.decode([rles[j] for j in present])
                masks[present] = torch.from_numpy(decoded).permute(2, 0,
                                                                   1).bool()
        return self._frame_instances(masks, bboxes, kept)

    def data_sample(self, encode: bool = False) -> TrackDataSample:
        """The video's frames, each with its :meth:`instances` as
        ``pred_track_instances``, in one :class:`TrackDataSample`.

        Args:
            encode (bool): Masks as RLE dicts, see :meth:`instances`.
        """
        sample = TrackDataSample()
        # Before the frames hold their instances: mmdet's setter formats
        # its first frame (an f-string outside its assert), and printing
        # masks that are on a GPU waits for the GPU once per printed value.
        sample.video_data_samples = list(self.frames)
        if self.stream_rle:
            per_frame = [self.instances(t, encode) for t in range(len(self))]
        else:
            # A chunk's frames at once: a few large ops instead of many
            # small ones per frame (kernel launches, on a GPU).
            kept = self.kept
            per_frame = []
            for chunk, frames in self._chunk_frames():
                per_frame += self._instances_from_probs(
                    chunk, frames, kept, encode)
        for frame, instances in zip(sample.video_data_samples, per_frame):
            frame.pred_track_instances = instances
        return sample

    def _chunk_frames(self) -> List[Tuple[int, slice]]:
        """(chunk, slice of its frames) of the frames added, in order
        (without ``stream_rle``), each slice's masks at most
        ``upsample_bytes`` of float32 at the output size."""
        _, _, (out_h, out_w) = self._sizes()
        per_frame = max(1, len(self.kept['tracks'])) * out_h * out_w * 4
        step = max(1, self.upsample_bytes // per_frame)
        runs: List[Tuple[int, slice]] = []
        for chunk, f in self._outputs:
            last = runs[-1] if runs else None
            if last and last[0] == chunk and f - last[1].start < step:
                runs[-1] = (chunk, slice(last[1].start, f + 1))
            else:
                runs.append((chunk, slice(f, f + 1)))
        return runs

    @staticmethod
    def _frame_instances(masks, bboxes: Tensor,
                         kept: Dict[str, Tensor]) -> InstanceData:
        """One frame's kept instances; ``masks`` are (k, H, W) or RLEs."""
        return InstanceData(
            masks=masks,
            bboxes=bboxes,
            scores=kept['scores'],
            labels=kept['labels'],
            instances_id=kept['instances_id'])

    def _instances_from_probs(self, chunk: int, frames: slice,
                              kept: Dict[str, Tensor],
                              encode: bool) -> List[InstanceData]:
        """:meth:`instances` of the frames ``frames`` of the added chunk
        ``chunk``, without ``stream_rle``: each kept track's masks are
        up-sampled once (with ``multi_label`` a track may be kept under
        several categories), all frames in the same ops."""
        outputs = self._chunks[chunk]
        ids = outputs['track_ids']
        device = outputs['bboxes'].device
        kept = self._kept_on(kept, device)
        tracks, inverse = kept['distinct'], kept['inverse']
        _, _, out = self._sizes()
        num_frames = len(range(*frames.indices(outputs['covered'].shape[1])))
        if len(ids) and len(tracks):
            # Where each kept track is in the chunk, -1 if absent.
            where = ids.new_full((self.num_tracks, ), -1)
            where[ids] = torch.arange(len(ids), device=ids.device)
            where = where[tracks]
            found = where >= 0
            where = where.clamp(min=0)
            masks = self._upsample(
                outputs['mask_probs'][where, frames],
                outputs['covered'][where, frames] & found[:, None])
            linked = outputs['linked'][where, frames] & found[:, None]
            bboxes = outputs['bboxes'][where, frames] * linked[..., None]
        else:
            masks = torch.zeros(
                len(tracks), num_frames, *out, dtype=torch.bool,
                device=device)
            bboxes = torch.zeros(len(tracks), num_frames, 4, device=device)
        masks, bboxes = masks[inverse], bboxes[inverse]
        if encode:
            # pycocotools encodes (H, W, k) masks: one call per frame.
            masks = masks.permute(1, 2, 3, 0).cpu().numpy().astype(np.uint8)
            masks = [mask_util.encode(np.asfortranarray(m)) for m in masks]
        else:
            masks = masks.unbind(1)
        return [
            self._frame_instances(m, b, kept)
            for m, b in zip(masks, bboxes.unbind(1))
        ]

    def _kept_on(self, kept: Dict[str, Tensor],
                 device: torch.device) -> Dict[str, Tensor]:
        """``kept`` on ``device``, with its ``distinct`` tracks and the
        ``inverse`` that gives each kept instance its track among them:
        copied once, not once per frame (each host-to-device copy waits
        for the device)."""
        if self._kept_on_device is None:
            distinct, inverse = kept['tracks'].unique(return_inverse=True)
            self._kept_on_device = {
                key: value.to(device)
                for key, value in dict(
                    kept, distinct=distinct, inverse=inverse).items()
            }
        return self._kept_on_device

    def _empty_rle(self) -> dict:
        if self._empty is None:
            _, _, (out_h, out_w) = self._sizes()
            self._empty = mask_util.encode(
                np.zeros((out_h, out_w, 1), np.uint8, order='F'))[0]
        return self._empty
