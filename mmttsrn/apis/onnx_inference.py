"""Run a TT-SRN model exported to ONNX over videos of any length.

The ONNX file (``tools/deployment/pytorch2onnx.py``) holds one clip, backbone
to head outputs. :func:`init_onnx_model` builds the config's :class:`TTSRN`
and swaps its backbone and head for the file, so the model's own code splits
a video into windows, joins them with its ``WindowLinker`` and post-processes
the tracks, exactly as for the PyTorch weights.
"""
import json
import os.path as osp
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmdet.structures import TrackDataSample
from mmengine.config import Config
from mmengine.model import BaseModule
from torch import Tensor

from mmttsrn.models.heads import TTSRNHead
from mmttsrn.models.vis.onnx_export import (CLASSES_KEY, INPUT_NAMES,
                                            OUTPUT_NAMES)
from .inference import FrameType, inference_video, init_model

__all__ = [
    'FramePassThrough', 'OnnxClipHead', 'init_onnx_model',
    'inference_video_onnx'
]


class FramePassThrough(nn.Module):
    """The backbone of a model whose ONNX file runs from frames: gives the
    frames (N, 3, H, W) as the one level of its features, ``(frames, )``."""

    def forward(self, frames: Tensor) -> Tuple[Tensor]:
        return (frames, )


class OnnxClipHead(TTSRNHead):
    """A :class:`TTSRNHead` whose forward runs an exported clip with
    onnxruntime.

    The layers live in the ONNX file (backbone included), so none are built;
    ``predict`` and ``predict_by_feat`` are the head's own.

    Args:
        session (onnxruntime.InferenceSession): Session of the exported clip.
        num_classes (int): Categories K of the exported model.
    """

    def __init__(self, session, num_classes: int) -> None:
        BaseModule.__init__(self)
        inputs = {i.name: i.shape for i in session.get_inputs()}
        outputs = {o.name: o.shape for o in session.get_outputs()}
        if set(inputs) != set(INPUT_NAMES) or \
                set(outputs) != set(OUTPUT_NAMES):
            raise ValueError(
                f'the ONNX file has inputs {sorted(inputs)} and outputs '
                f'{sorted(outputs)}; expected {list(INPUT_NAMES)} and '
                f'{list(OUTPUT_NAMES)} (tools/deployment/pytorch2onnx.py)')
        _, self.num_frames, _, *self.input_size = inputs['inputs']
        self.num_queries, _, num_logits = outputs['cls_scores'][1:]
        if num_logits != num_classes + 1:
            raise ValueError(f'the ONNX file predicts {num_logits - 1} '
                             f'classes but the config {num_classes}')
        self.num_classes = num_classes
        self.session = session

    def forward(self, feats: Sequence[Tensor],
                pad_mask: Tensor) -> Dict[str, Tensor]:
        """Run one clip.

        Args:
            feats (Sequence[Tensor]): ``(frames, )``, the clip's frames (T,
                3, H, W), as :class:`FramePassThrough` gives them.
            pad_mask (Tensor): (1, T, H, W) bool, True on padding.

        Returns:
            dict: As :meth:`TTSRNHead.forward` for the last decoder layer:
            ``cls_scores`` (1, 1, n, T, K+1), ``bbox_preds`` (1, 1, n, T, 4)
            and ``mask_preds`` (1, n, T, H/4, W/4).
        """
        frames, = feats
        size = list(frames.shape[-2:])
        if size != self.input_size:
            raise ValueError(
                f'the ONNX file takes frames padded to {self.input_size} '
                f'(H, W) but the pipeline gives {size}; export with '
                f'--size matching the test pipeline\'s Resize')
        inputs = frames.reshape(*pad_mask.shape[:2], *frames.shape[1:])
        outs = self.session.run(
            list(OUTPUT_NAMES),
            dict(
                zip(INPUT_NAMES,
                    (inputs.float().cpu().numpy(), pad_mask.cpu().numpy()))))
        cls_scores, bbox_preds, mask_preds = (
            torch.from_numpy(out).to(frames.device) for out in outs)
        # One decoder layer: the last, which is all predict_by_feat reads.
        return dict(
            cls_scores=cls_scores[None],
            bbox_preds=bbox_preds[None],
            mask_preds=mask_preds)


def init_onnx_model(config: Union[str, Path, Config],
                    onnx_file: str,
                    providers: Optional[Sequence[str]] = None,
                    cfg_options: Optional[dict] = None) -> nn.Module:
    """Build the config's TTSRN on the CPU with its clip run by an ONNX file.

    Everything but the backbone and the head comes from the config: data
    preprocessor, test pipeline, ``test_cfg`` and linker. The class names are
    the ones stored in the file at export, else found as
    :func:`init_model` finds them. The file has no decoder embeddings, so a
    linker's re-identification (``reid_thr``) is not used (a warning says
    so).

    Args:
        config (str | Path | Config): The config the file was exported from.
        onnx_file (str): File from ``tools/deployment/pytorch2onnx.py``.
        providers (Sequence[str], optional): onnxruntime execution
            providers. Defaults to ``['CPUExecutionProvider']``.
        cfg_options (dict, optional): Overrides merged into the config.

    Returns:
        nn.Module: A model for :func:`mmttsrn.apis.inference_video`.
    """
    import onnxruntime as ort
    if not osp.isfile(onnx_file):
        raise FileNotFoundError(f'ONNX file {onnx_file} does not exist')
    session = ort.InferenceSession(
        str(onnx_file), providers=list(providers or ['CPUExecutionProvider']))
    stored = session.get_modelmeta().custom_metadata_map.get(CLASSES_KEY)
    with warnings.catch_warnings():
        # The PyTorch weights are not used, and stored class names replace
        # the ones init_model would fall back to.
        warnings.filterwarnings('ignore', message='no checkpoint given')
        if stored is not None:
            warnings.filterwarnings('ignore', message='class names')
        model = init_model(config, None, 'cpu', cfg_options)
    head = OnnxClipHead(session, model.num_classes)
    if head.num_frames != model.num_frames:
        raise ValueError(f'the ONNX file takes clips of {head.num_frames} '
                         f'frames but the config {model.num_frames}')
    if stored is not None:
        model.dataset_meta = dict(classes=tuple(json.loads(stored)))
    if getattr(model.linker, 'reid_thr', None) is not None:
        warnings.warn('the ONNX file gives no decoder embeddings: windows '
                      'are joined by mask IoU alone (reid_thr is not used)')
    # The file runs from frames to head outputs: extract_feat passes the
    # frames through to the head.
    model.backbone = FramePassThrough()
    model.track_head = head
    return model


def inference_video_onnx(
        onnx_file: str,
        config: Union[str, Path, Config],
        frames: Sequence[FrameType],
        providers: Optional[Sequence[str]] = None,
        cfg_options: Optional[dict] = None) -> TrackDataSample:
    """Segment and track the instances of one video with an ONNX file.

    :func:`init_onnx_model` then :func:`mmttsrn.apis.inference_video`; to
    run several videos, build the model once and call the latter.

    Args:
        onnx_file (str): File from ``tools/deployment/pytorch2onnx.py``.
        config (str | Path | Config): The config it was exported from.
        frames (Sequence[np.ndarray | str]): The video's L frames, BGR
            (H, W, 3) arrays or image paths, all of one size.
        providers (Sequence[str], optional): onnxruntime providers.
        cfg_options (dict, optional): Overrides merged into the config.

    Returns:
        TrackDataSample: As :func:`mmttsrn.apis.inference_video`.
    """
    return inference_video(
        init_onnx_model(config, onnx_file, providers, cfg_options), frames)
