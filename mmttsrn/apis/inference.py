"""Build a TT-SRN model from a config and run it on the frames of a video."""
import copy
import os.path as osp
import sys
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmcv.transforms import Compose
from mmdet.registry import DATASETS, MODELS
from mmdet.structures import TrackDataSample
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmengine.utils import ProgressBar

from ..models.vis.video_tracks import VideoTracks
from ..utils import sync_num_frames
from .video_reader import FrameType, VideoFrames

__all__ = [
    'init_model', 'build_inference_pipeline', 'inference_video',
    'track_video', 'VideoFrames'
]

# Transforms of a test pipeline that read files: loading is replaced by
# ``LoadImageFromNDArray`` (the frames are already in memory) and the
# annotations are dropped (a demo video has none).
_LOADERS = ('LoadVideoFrame', 'LoadImageFromFile')
_ANNOTATION_LOADERS = ('LoadTrackAnnotations', 'LoadAnnotations')


def _base_type(transform: dict) -> str:
    """The registered name of a transform config, without a scope."""
    return str(transform.get('type', '')).split('.')[-1]


def _in_memory(transforms: Sequence[dict]) -> List[dict]:
    """Rewrite a (possibly nested) pipeline config to take in-memory frames.
    """
    out = []
    for transform in transforms:
        name = _base_type(transform)
        if name in _ANNOTATION_LOADERS:
            continue
        if name in _LOADERS:
            out.append(dict(type='LoadImageFromNDArray'))
            continue
        transform = copy.deepcopy(transform)
        if 'transforms' in transform:
            # Wrappers such as TransformBroadcaster hold a sub-pipeline.
            transform['transforms'] = _in_memory(transform['transforms'])
        out.append(transform)
    return out


def build_inference_pipeline(cfg: Config) -> Compose:
    """The config's test pipeline, rewritten to take frames in memory.

    ``cfg.test_dataloader.dataset.pipeline`` is used with every frame loader
    (``LoadVideoFrame``, ``LoadImageFromFile``) replaced by mmdet's
    ``LoadImageFromNDArray`` and the annotation loaders removed, so the
    frames are resized and packed exactly as in testing.

    Args:
        cfg (Config): A full TT-SRN config.

    Returns:
        Compose: Maps a dict of per-frame lists (``img``, ``img_id``,
        ``frame_id``, ...) to ``dict(inputs, data_samples)``.
    """
    try:
        pipeline = cfg.test_dataloader.dataset.pipeline
    except AttributeError as err:
        raise KeyError('the config has no test_dataloader.dataset.pipeline '
                       'to prepare frames with') from err
    return Compose(_in_memory(pipeline))


def _classes_from_config(cfg: Config) -> Optional[tuple]:
    """Class names from the test dataset's metainfo or annotation file."""
    dataset_cfg = copy.deepcopy(cfg.test_dataloader.get('dataset', {}))
    classes = (dataset_cfg.get('metainfo') or {}).get('classes')
    if classes is not None:
        return tuple(classes)
    ann_file = dataset_cfg.get('ann_file')
    if not ann_file:
        return None
    ann_file = osp.join(dataset_cfg.get('data_root') or '', ann_file)
    if not osp.isfile(ann_file):
        return None
    # YouTube-VIS takes its classes from the annotation file's categories.
    dataset_cfg['pipeline'] = []
    return tuple(DATASETS.build(dataset_cfg).metainfo['classes'])


def init_model(config: Union[str, Path, Config],
               checkpoint: Optional[str] = None,
               device: str = 'cpu',
               cfg_options: Optional[dict] = None) -> nn.Module:
    """Build a TT-SRN model from a config, optionally with weights.

    The class names (``model.dataset_meta['classes']``) come from, in
    order: the checkpoint's ``meta.dataset_meta`` (mmengine saves it while
    training), the test dataset's ``metainfo.classes`` in the config, the
    categories of the test annotation file if it exists, else
    ``class_0 ... class_{K-1}`` with a warning.

    Args:
        config (str | Path | Config): Config file or object.
        checkpoint (str, optional): Local checkpoint file. Without one the
            weights stay random (a warning says so).
        device (str): Device to put the model on. Defaults to 'cpu'.
        cfg_options (dict, optional): Overrides merged into the config.

    Returns:
        nn.Module: The model in eval mode, with ``cfg`` (the config) and
        ``dataset_meta`` set.
    """
    if isinstance(config, (str, Path)):
        if not osp.isfile(config):
            raise FileNotFoundError(f'config file {config} does not exist')
        config = Config.fromfile(str(config))
    elif not isinstance(config, Config):
        raise TypeError('config must be a file name or a Config, got '
                        f'{type(config).__name__}')
    config = copy.deepcopy(config)
    if cfg_options:
        config.merge_from_dict(cfg_options)
    sync_num_frames(config)
    # Pretrained parts are superseded by the checkpoint, or unwanted for a
    # random-weight model; either way do not read them.
    config.model.get('backbone', {}).pop('init_cfg', None)
    init_default_scope(config.get('default_scope', 'mmdet'))

    model = MODELS.build(config.model)
    meta = {}
    if checkpoint is None:
        warnings.warn('no checkpoint given: the model has random weights')
    else:
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(
                f'checkpoint file {checkpoint} does not exist')
        meta = load_checkpoint(
            model, checkpoint, map_location='cpu').get('meta', {})

    classes = (meta.get('dataset_meta') or {}).get('classes')
    if classes is None:
        classes = _classes_from_config(config)
    num_classes = model.num_classes
    if classes is None:
        warnings.warn('class names are neither in the checkpoint nor in the '
                      'config; using class_0 ... class_K-1')
        classes = tuple(f'class_{i}' for i in range(num_classes))
    elif len(classes) != num_classes:
        raise ValueError(f'the model has {num_classes} classes but the '
                         f'class names are {len(classes)}: {classes}')
    model.dataset_meta = dict(classes=tuple(classes))
    model.cfg = config
    model.to(device)
    model.eval()
    return model


def track_video(model: nn.Module,
                video: Union[str, Path, Sequence[FrameType], VideoFrames],
                progress: bool = False) -> VideoTracks:
    """Segment and track the instances of a video of any length.

    The frames are read one at a time (:class:`VideoFrames`), prepared by
    the config's test pipeline (see :func:`build_inference_pipeline`) and
    run in the model's windows as they come (``TTSRN.predict_frames``), so
    memory does not grow with the video: what is kept per frame is an RLE
    mask and a box per track.

    Args:
        model (nn.Module): A model from :func:`init_model`.
        video (str | Path | Sequence | VideoFrames): A video file, a folder
            of frames, or the frames as BGR (H, W, 3) arrays or image paths,
            all of one size.
        progress (bool): Print a progress bar of the frames segmented,
            with the frames per second.

    Returns:
        VideoTracks: ``len()`` frames; ``instances(t)`` gives frame t's
        instances (``masks`` (k, H, W) bool at the original size,
        ``bboxes`` (k, 4) x1y1x2y2 in pixels, ``scores``, ``labels``,
        ``instances_id``) and ``frames[t]`` its meta information.
    """
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        raise AttributeError('model.cfg is missing; build the model with '
                             'mmttsrn.apis.init_model')
    frames = video if isinstance(video, VideoFrames) else VideoFrames(video)
    pipeline = build_inference_pipeline(cfg)
    num_frames = len(frames)

    def packed():
        for t, img in enumerate(frames):
            yield pipeline(
                dict(
                    img=[img],
                    img_id=[t],
                    frame_id=[t],
                    video_id=[0],
                    video_length=[num_frames],
                    ori_video_length=[num_frames]))

    # sys.stdout of now, not of when mmengine was imported.
    bar = ProgressBar(num_frames, file=sys.stdout) if progress else None
    with torch.no_grad():
        tracks = model.predict_frames(
            packed(), progress=bar.update if bar else None)
    if bar is not None:
        bar.file.write('\n')
    return tracks


def inference_video(
        model: nn.Module,
        frames: Union[str, Path, Sequence[FrameType]]) -> TrackDataSample:
    """Segment and track the instances of one video.

    :func:`track_video`, with every frame's instances set on its sample:
    the returned masks are dense, so for long videos use
    :func:`track_video` and read the frames one at a time.

    Args:
        model (nn.Module): A model from :func:`init_model`.
        frames (str | Path | Sequence[np.ndarray | str]): The video's L
            frames in order, as BGR (H, W, 3) arrays or image paths, all of
            one size, or a video file or frame folder.

    Returns:
        TrackDataSample: L frame samples, each with ``pred_track_instances``
        (``masks`` (k, H, W) bool at the original size, ``bboxes`` (k, 4)
        x1y1x2y2 in pixels, ``scores``, ``labels``, ``instances_id``).
    """
    return track_video(model, frames).data_sample()
