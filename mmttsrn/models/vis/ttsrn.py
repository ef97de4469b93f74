"""TT-SRN: the video instance segmentation model."""
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from mmdet.models.mot import BaseMOTModel
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import TrackDataSample, TrackSampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import OptConfigType, OptMultiConfig
from mmengine.structures import InstanceData
from torch import Tensor

__all__ = ['TTSRN']


@MODELS.register_module()
class TTSRN(BaseMOTModel):
    """TT-SRN (Transformer-based video instance segmentation with Sine
    Representation Networks).

    Frames of a clip go through the backbone one by one (batched); the head
    sees the whole clip. Videos of any length are handled in ``predict``:
    shorter ones are stretched to the clip length by repeating frames, longer
    ones run in overlapping windows joined by ``test_cfg.linker``.

    Args:
        backbone (dict): Any mmdet backbone giving strides 4, 8, 16, 32.
        track_head (dict): :class:`TTSRNHead` config.
        data_preprocessor (dict): Usually ``TrackDataPreprocessor``.
        test_cfg (dict): ``max_per_video`` instances kept by score (for AP),
            ``score_thr``, ``mask_thr``, ``linker`` (a :class:`WindowLinker`
            config) and ``multi_label`` (default False: one category per
            track, as in the paper; True: rank every (track, category) pair
            and keep the best ``max_per_video``, as mmdet's Mask2Former-VIS
            does, so that a track whose class is uncertain is also
            reported under its second-best category) and
            ``drop_absent_frames`` (default False, as the paper; True: a
            track's frames whose class probabilities say no-object, i.e.
            sum to less than 0.5, get no mask and do not count in its score
            and category: TT-SRN classifies every slot in every frame, so
            an instance that enters late or leaves early is not painted
            over the frames where it is absent).
    """

    def __init__(self,
                 backbone: dict,
                 track_head: dict,
                 data_preprocessor: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super(BaseMOTModel, self).__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.track_head = MODELS.build(track_head)
        self.num_classes = self.track_head.num_classes
        self.num_frames = self.track_head.num_frames
        self.test_cfg = dict(
            max_per_video=10,
            score_thr=0.0,
            mask_thr=0.5,
            multi_label=False,
            drop_absent_frames=False)
        self.test_cfg.update(test_cfg or {})
        self.linker = TASK_UTILS.build(
            self.test_cfg.get('linker', dict(type='WindowLinker')))

    @staticmethod
    def pad_mask(inputs: Tensor, data_samples: TrackSampleList) -> Tensor:
        """(B, T, H, W) bool, True outside each frame's ``img_shape``."""
        H, W = inputs.shape[-2:]
        shapes = inputs.new_tensor(
            [[f.img_shape[:2] for f in s.video_data_samples]
             for s in data_samples], dtype=torch.long)  # (B, T, 2)
        ys = torch.arange(H, device=inputs.device)
        xs = torch.arange(W, device=inputs.device)
        return ((ys[:, None] >= shapes[..., 0, None, None]) |
                (xs[None, :] >= shapes[..., 1, None, None]))

    def extract_feat(self, inputs: Tensor) -> tuple:
        """(B, T, C, H, W) -> backbone features, each (B*T, C_i, H_i, W_i)."""
        if inputs.dim() != 5:
            raise ValueError('inputs must be (B, T, C, H, W), got shape '
                             f'{tuple(inputs.shape)}')
        return self.backbone(inputs.flatten(0, 1))

    def loss(self, inputs: Tensor, data_samples: TrackSampleList,
             **kwargs) -> Dict[str, Tensor]:
        """Set losses of a batch of clips (B, T, C, H, W)."""
        feats = self.extract_feat(inputs)
        return self.track_head.loss(feats, self.pad_mask(inputs, data_samples),
                                    data_samples)

    def _forward(self, inputs: Tensor,
                 data_samples: Optional[TrackSampleList] = None) -> dict:
        """Raw head outputs of a batch of clips (see ``TTSRNHead.forward``).
        """
        if data_samples is None:
            pad_mask = inputs.new_zeros(
                inputs.shape[:2] + inputs.shape[-2:], dtype=torch.bool)
        else:
            pad_mask = self.pad_mask(inputs, data_samples)
        return self.track_head(self.extract_feat(inputs), pad_mask)

    def predict(self,
                inputs: Tensor,
                data_samples: TrackSampleList,
                rescale: bool = True) -> TrackSampleList:
        """Segment and track the instances of whole videos.

        Args:
            inputs (Tensor): (B, L, C, H, W), L frames of any number.
            data_samples (list[TrackDataSample]): One per video.
            rescale (bool): Return masks and boxes at the original frame
                size (else at the network input size).

        Returns:
            list[TrackDataSample]: every frame carries
            ``pred_track_instances`` (masks, bboxes, scores, labels,
            instances_id), as mmdet's ``YouTubeVISMetric`` reads them.
        """
        pad_masks = self.pad_mask(inputs, data_samples)
        results = []
        for video, pad_mask, sample in zip(inputs, pad_masks, data_samples):
            tracks = self._track_video(video, pad_mask)
            instances = self._post_process(tracks, sample, rescale)
            frames = sample.video_data_samples
            for frame, frame_instances in zip(frames, instances):
                frame.pred_track_instances = frame_instances
            result = TrackDataSample()
            result.video_data_samples = frames
            results.append(result)
        return results

    def _track_video(self, video: Tensor, pad_mask: Tensor) -> dict:
        """Windows over one video (L, C, H, W) -> joined tracks."""
        windows = []
        for frame_inds in self.linker.split(
                len(video), self.num_frames, device=video.device):
            feats = self.extract_feat(video[frame_inds][None])
            clip, = self.track_head.predict(feats, pad_mask[frame_inds][None])
            windows.append(dict(frame_inds=frame_inds, **clip))
        return self.linker.merge(windows, len(video))

    def _post_process(self, tracks: dict, sample: TrackDataSample,
                      rescale: bool) -> List[InstanceData]:
        """Scores, labels, masks and boxes of the kept tracks, per frame.

        One category per track (default): majority vote over the frames a
        track covers, scored by the mean over those frames of the highest
        class probability. With ``multi_label``: every (track, category)
        pair scored by the category's mean probability over the covered
        frames, each kept pair an instance of its own. Tracks with an empty
        mask in every frame are dropped before the best ``max_per_video``
        are kept. With ``drop_absent_frames``, a track covers only the frames
        where it is classified as an object.
        """
        covered = tracks['covered']  # (N, L)
        if self.test_cfg.get('drop_absent_frames', False):
            covered = covered & (tracks['cls_probs'].sum(-1) >= 0.5)
        num_covered = covered.sum(1).clamp(min=1)
        # A track whose mask is empty in every frame it covers cannot match
        # anything: drop it before it takes one of the top-k places.
        mask_thr = self.test_cfg['mask_thr']
        has_mask = ((tracks['mask_probs'] > mask_thr).flatten(2).any(-1)
                    & covered).any(1)
        if self.test_cfg.get('multi_label', False):
            probs = (tracks['cls_probs'] * covered[..., None]).sum(1) / \
                num_covered[:, None]  # (N, K)
            scores = probs.flatten()
            labels = torch.arange(
                self.num_classes, device=scores.device).repeat(len(probs))
            track_inds = torch.arange(
                len(probs), device=scores.device).repeat_interleave(
                    self.num_classes)
        else:
            max_probs, frame_labels = tracks['cls_probs'].max(-1)
            scores = (max_probs * covered).sum(1) / num_covered
            votes = F.one_hot(frame_labels,
                              self.num_classes) * covered[..., None]
            labels = votes.sum(1).argmax(1)
            track_inds = torch.arange(len(scores), device=scores.device)
        has_mask = has_mask[track_inds]
        ranked = scores.masked_fill(~has_mask, -1)
        # The best max_per_video above score_thr, best first (one
        # host-device sync, for the number kept).
        order = ranked.argsort(descending=True, stable=True)
        order = order[:self.test_cfg['max_per_video']]
        keep = order[(ranked[order] > self.test_cfg['score_thr'])
                     & has_mask[order]]
        scores, labels, ids = scores[keep], labels[keep], keep
        keep = track_inds[keep]

        frame0 = sample.video_data_samples[0]
        img_h, img_w = frame0.img_shape[:2]
        pad_h, pad_w = frame0.batch_input_shape
        out_h, out_w = frame0.ori_shape[:2] if rescale else (img_h, img_w)
        # (k, L, h4, w4) -> padded input size -> crop padding -> output size
        masks = tracks['mask_probs'][keep]
        if len(keep):
            masks = F.interpolate(
                masks, size=(pad_h, pad_w), mode='bilinear',
                align_corners=False)[..., :img_h, :img_w]
            masks = F.interpolate(
                masks, size=(out_h, out_w), mode='bilinear',
                align_corners=False)
        else:
            masks = masks.new_zeros(0, covered.shape[1], out_h, out_w)
        # Frames a track does not cover get empty masks.
        masks = (masks > mask_thr) & \
            covered[keep][..., None, None]
        bboxes = bbox_cxcywh_to_xyxy(tracks['bboxes'][keep]) * \
            masks.new_tensor([out_w, out_h, out_w, out_h], dtype=torch.float)

        instances = []
        for t in range(covered.shape[1]):
            instances.append(
                InstanceData(
                    masks=masks[:, t],
                    bboxes=bboxes[:, t],
                    scores=scores,
                    labels=labels,
                    instances_id=ids))
        return instances
