"""TT-SRN: the video instance segmentation model."""
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
from mmdet.models.mot import BaseMOTModel
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import DetDataSample, TrackDataSample, TrackSampleList
from mmdet.utils import OptConfigType, OptMultiConfig
from mmengine.structures import InstanceData
from torch import Tensor

from ..layers import CUDAGraphCache, is_graph_capture, low_precision_norms
from .video_tracks import VideoTracks

__all__ = ['TTSRN']


@MODELS.register_module()
class TTSRN(BaseMOTModel):
    """TT-SRN (Transformer-based video instance segmentation with Sine
    Representation Networks).

    Frames of a clip go through the backbone one by one (batched); the head
    sees the whole clip. Videos of any length are handled in ``predict``:
    shorter ones are stretched to the clip length by repeating frames, longer
    ones run in overlapping windows joined by ``test_cfg.linker`` as they
    run (:class:`LinkStream`), each frame's outputs reduced to RLE masks as
    soon as no later window sees it (:class:`VideoTracks`).
    :meth:`predict_frames` (and :meth:`test_step` on lazily read videos)
    also reads the frames as the windows need them, so that memory does not
    grow with the video.

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
            over the frames where it is absent) and ``cpu_backbone_chunk``
            (default None: every frame of a clip in one backbone call; an
            int: on the CPU, inference runs the backbone on at most this
            many frames at a time, so that its activations are small
            enough for malloc to reuse and for the cache to hold; exact)
            and ``cuda_graphs`` (default 0; N > 0: inference on a GPU
            records each clip's network forward into a CUDA graph and
            replays it, keeping the graphs of the N clip shapes used last,
            so that the host launches one graph per clip instead of
            thousands of kernels; see docs/train_test.md) and
            ``cast_parameters_once`` (default True: under autocast, such a
            graph runs on copies of the parameters that the forward only
            casts to the autocast dtype, cast when the graph is recorded
            and again when they change in place, instead of casting them in
            every replay; the same result, about 600 fewer kernels per clip
            of the paper config; see :class:`CastParameters`) and
            ``low_precision_norms`` (default True: in GPU inference under
            bf16/fp16 autocast the layer and group norms take and return
            the low-precision dtype, as CPU autocast does, instead of
            float32 that the next conv or linear casts back; the
            statistics stay float32. False: autocast's float32 norms; read
            when the model is built, which swaps the norm modules).
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
            drop_absent_frames=False,
            cpu_backbone_chunk=None,
            cuda_graphs=0,
            cast_parameters_once=True,
            low_precision_norms=True)
        self.test_cfg.update(test_cfg or {})
        for key in ('low_precision_norms', 'cast_parameters_once'):
            if not isinstance(self.test_cfg[key], bool):
                raise ValueError(f'test_cfg.{key} must be a bool, got '
                                 f'{self.test_cfg[key]!r}')
        if self.test_cfg['low_precision_norms']:
            low_precision_norms(self)
        chunk = self.test_cfg['cpu_backbone_chunk']
        if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
            raise ValueError('test_cfg.cpu_backbone_chunk must be None or a '
                             f'positive int, got {chunk!r}')
        graphs = self.test_cfg['cuda_graphs']
        if not isinstance(graphs, int) or isinstance(graphs,
                                                     bool) or graphs < 0:
            raise ValueError('test_cfg.cuda_graphs must be an int >= 0, got '
                             f'{graphs!r}')
        self._graphs = CUDAGraphCache(
            self._graphed_clip,
            graphs,
            module=self if self.test_cfg['cast_parameters_once'] else
            None) if graphs else None
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
            instances_id) on the device of ``inputs``, as mmdet's
            ``YouTubeVISMetric`` reads them.
        """
        results = []
        for video, sample in zip(inputs, data_samples):
            frames = sample.video_data_samples
            # The whole video is in memory already: its masks need not
            # stream through RLE.
            tracks = self._track_video(
                self._windows(video, frames), frames, rescale,
                stream_rle=False)
            results.append(tracks.data_sample())
        return results

    def test_step(self, data: dict) -> TrackSampleList:
        """``BaseModel.test_step``, or, when ``data['inputs']`` holds
        iterables of frames (see :class:`LazyVideoFrames`) instead of
        tensors, :meth:`predict_frames` on each, with the masks of the
        returned frames as RLE dicts (pycocotools')."""
        inputs = data['inputs']
        if isinstance(inputs, Tensor) or all(
                isinstance(video, Tensor) for video in inputs):
            return super().test_step(data)
        results = []
        for video in inputs:
            tracks = self.predict_frames(video)
            results.append(tracks.data_sample(encode=True))
        return results

    def predict_frames(
            self,
            frames: Iterable[dict],
            rescale: bool = True,
            progress: Optional[Callable[[int], None]] = None) -> VideoTracks:
        """Segment and track one video read a frame at a time.

        Memory does not grow with the video: the frames of a window are
        pre-processed (``data_preprocessor``) when it runs and dropped when
        no later window needs them, and the linker and
        :class:`VideoTracks` keep only what later windows and the final
        ranking need.

        Args:
            frames (Iterable[dict]): The video's frames in order, each as the
                test pipeline packs a one-frame video: ``inputs``
                (1, C, H, W) and ``data_samples``, a one-frame
                :class:`TrackDataSample`.
            rescale (bool): Masks and boxes at the original frame size.
            progress (Callable[[int], None], optional): Called after each
                window with the number of frames it finished (e.g.
                ``mmengine.utils.ProgressBar.update``).

        Returns:
            VideoTracks: The tracks; ``frames`` holds the frames' meta
            information.
        """
        samples: List[DetDataSample] = []

        def windows():
            for inds, clip, next_start in self.linker.windows(
                    frames, self.num_frames):
                sample = TrackDataSample()
                sample.video_data_samples = [
                    f['data_samples'].video_data_samples[0] for f in clip
                ]
                data = self.data_preprocessor(
                    dict(
                        inputs=[torch.cat([f['inputs'] for f in clip])],
                        data_samples=[sample]), False)
                inputs, (sample, ) = data['inputs'], data['data_samples']
                # The meta information (with batch_input_shape) of the
                # frames seen for the first time; their ground truth, if
                # loaded, is not kept.
                for i, frame in zip(inds.tolist(), sample.video_data_samples):
                    if i == len(samples):
                        samples.append(DetDataSample(metainfo=frame.metainfo))
                yield inds, inputs, self.pad_mask(inputs,
                                                  [sample]), next_start

        return self._track_video(windows(), samples, rescale, progress)

    def _windows(self, video: Tensor, frames: List[DetDataSample]):
        """Windows of a pre-processed video (L, C, H, W), as
        :meth:`_track_video` takes them."""
        for inds, _, next_start in self.linker.windows(
                range(len(video)), self.num_frames):
            clip = video[inds][None]
            sample = TrackDataSample()
            sample.video_data_samples = [frames[i] for i in inds.tolist()]
            yield inds, clip, self.pad_mask(clip, [sample]), next_start

    def _track_video(self, windows: Iterable[Tuple[Tensor, Tensor, Tensor,
                                                   Optional[int]]],
                     frames: List[DetDataSample],
                     rescale: bool,
                     progress: Optional[Callable[[int], None]] = None,
                     stream_rle: bool = True) -> VideoTracks:
        """Run the windows of one video and link them as they come.

        Args:
            windows (Iterable[tuple]): Per window: ``frame_inds`` (T,),
                the clip (1, T, C, H, W) pre-processed, its pad mask
                (1, T, H, W) and the next window's first frame (None for
                the last), as ``WindowLinker.windows`` orders them.
            frames (list[DetDataSample]): The video's frame samples, each
                there by the time its window runs.
            rescale (bool): Masks and boxes at the original frame size.
            progress (Callable[[int], None], optional): Called with the
                number of frames each window finished.
            stream_rle (bool): See :class:`VideoTracks`.
        """
        stream = self.linker.stream()
        tracks = VideoTracks(self.num_classes, self.test_cfg, frames, rescale,
                             stream_rle)
        for inds, inputs, pad_mask, next_start in windows:
            clip = self._predict_clip(inputs, pad_mask, inds)
            clip['frame_inds'] = inds.to(inputs.device)
            finished = stream.push(clip, next_start)
            tracks.add(finished)
            if progress is not None:
                progress(len(finished['frame_inds']))
        return tracks

    def _extract_frame_feat(self, inputs: Tensor) -> tuple:
        """:meth:`extract_feat` of (B, T, C, H, W), on the CPU without
        autograd or graph capture in chunks of
        ``test_cfg.cpu_backbone_chunk`` frames."""
        chunk = self.test_cfg['cpu_backbone_chunk']
        if (chunk is None or inputs.dim() != 5 or inputs.device.type != 'cpu'
                or torch.is_grad_enabled() or is_graph_capture()
                or inputs.shape[0] * inputs.shape[1] <= chunk):
            return self.extract_feat(inputs)
        images = inputs.flatten(0, 1)
        feats = [
            self.backbone(images[start:start + chunk])
            for start in range(0, len(images), chunk)
        ]
        return tuple(torch.cat(level) for level in zip(*feats))

    @staticmethod
    def _distinct_frames(inds: Tensor) -> Tuple[Tensor, Tensor]:
        """Of a clip made of the video frames ``inds`` (T,): a position
        (D,) in the clip of each of its D distinct frames, and the index
        (T,) of each clip frame among them."""
        distinct, inverse = torch.unique(inds, return_inverse=True)
        # Any position of each distinct frame will do.
        where = inverse.new_empty(len(distinct)).scatter_(
            0, inverse, torch.arange(len(inds), device=inverse.device))
        return where, inverse

    def extract_clip_feat(self, inputs: Tensor, inds: Tensor) -> tuple:
        """Backbone features of one clip (1, T, C, H, W) made of the video
        frames ``inds`` (T,), each distinct frame computed once (a video
        shorter than T repeats its frames)."""
        where, inverse = self._distinct_frames(inds)
        if len(where) == len(inds):
            return self._extract_frame_feat(inputs)
        feats = self._extract_frame_feat(inputs[:, where.to(inputs.device)])
        inverse = inverse.to(inputs.device)
        return tuple(f[inverse] for f in feats)

    def _predict_clip(self, inputs: Tensor, pad_mask: Tensor,
                      inds: Tensor) -> dict:
        """The head's predictions for one clip (1, T, C, H, W) of the
        video frames ``inds`` (T,): see :meth:`_predict_feats`. With
        ``test_cfg.cuda_graphs`` a clip on a GPU runs as a CUDA graph (one
        per number of distinct frames and frame size)."""
        if self._graphs is None or not inputs.is_cuda:
            return self._predict_feats(
                self.extract_clip_feat(inputs, inds), pad_mask)
        where, inverse = self._distinct_frames(inds)
        if len(where) == len(inds):
            return self._graphs(inputs, pad_mask)
        return self._graphs(inputs[:, where.to(inputs.device)], pad_mask,
                            inverse.to(inputs.device))

    def _graphed_clip(self,
                      frames: Tensor,
                      pad_mask: Tensor,
                      inverse: Optional[Tensor] = None) -> dict:
        """:meth:`_predict_feats` of a clip given by its D distinct frames
        (1, D, C, H, W) and the index (T,) of each clip frame among them
        (None: the frames are the clip); what ``cuda_graphs`` captures."""
        feats = self.extract_feat(frames)
        if inverse is not None:
            feats = tuple(f[inverse] for f in feats)
        return self._predict_feats(feats, pad_mask)

    def _predict_feats(self, feats: tuple, pad_mask: Tensor) -> dict:
        """The head's predictions for one clip's backbone features: as
        ``TTSRNHead.predict_by_feat`` gives them, plus ``embeds`` (n, d),
        each slot's last-layer decoder output averaged over the clip, when
        the linker re-identifies (``reid_thr``)."""
        embeds: List[Tensor] = []
        cls_head = getattr(self.track_head, 'cls_head', None)
        hook = None
        if cls_head is not None and \
                getattr(self.linker, 'reid_thr', None) is not None:
            # The head does not return its decoder output; the class head
            # reads it, (num_layers, B, n, T, d), so take it from there.
            hook = cls_head.register_forward_pre_hook(
                lambda _, args: embeds.append(args[0][-1, 0]))
        try:
            clip, = self.track_head.predict(feats, pad_mask)
        finally:
            if hook is not None:
                hook.remove()
        if embeds:
            clip['embeds'] = embeds[-1].mean(1)
        return clip

    def train(self, mode: bool = True) -> 'TTSRN':
        """``nn.Module.train``; also drops the CUDA graphs. A graph reads
        the memory its parameters had at the capture: weights loaded in
        place reach it, a parameter replaced (``.data = ...``, a new
        ``nn.Parameter``) would not. Dropping them at every switch (so
        around each validation) costs one capture per clip shape."""
        if getattr(self, '_graphs', None) is not None:
            self._graphs.clear()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        # .to(), .cuda(), .half() and the like give parameters new memory,
        # which graphs captured before would not read.
        if getattr(self, '_graphs', None) is not None:
            self._graphs.clear()
        return super()._apply(fn, *args, **kwargs)

    def _post_process(self, tracks: dict, sample: TrackDataSample,
                      rescale: bool) -> List[InstanceData]:
        """Per-frame instances of tracks joined by ``WindowLinker.merge``.

        Args:
            tracks (dict): ``cls_probs`` (N, L, K), ``bboxes`` (N, L, 4),
                ``mask_probs`` (N, L, h4, w4) and ``covered`` (N, L).
            sample (TrackDataSample): The video's L frames.
            rescale (bool): Masks and boxes at the original frame size.

        Returns:
            list[InstanceData]: One per frame, as :meth:`predict` sets them
            (see :class:`VideoTracks` for the ranking).
        """
        N, L = tracks['covered'].shape
        video = VideoTracks(self.num_classes, self.test_cfg,
                            sample.video_data_samples, rescale)
        video.add(
            dict(
                tracks,
                frame_inds=torch.arange(L),
                track_ids=torch.arange(N)))
        return [video.instances(t) for t in range(L)]
