"""Build a TT-SRN model from a config and run it on the frames of a video."""
import copy
import os.path as osp
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Union

import mmcv
import numpy as np
import torch
import torch.nn as nn
from mmcv.transforms import Compose
from mmdet.registry import DATASETS, MODELS
from mmdet.structures import TrackDataSample
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

from ..utils import sync_num_frames

__all__ = ['init_model', 'build_inference_pipeline', 'inference_video']

# Transforms of a test pipeline that read files: loading is replaced by
# ``LoadImageFromNDArray`` (the frames are already in memory) and the
# annotations are dropped (a demo video has none).
_LOADERS = ('LoadVideoFrame', 'LoadImageFromFile')
_ANNOTATION_LOADERS = ('LoadTrackAnnotations', 'LoadAnnotations')

FrameType = Union[np.ndarray, str, Path]


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


def _read_frames(frames: Sequence[FrameType]) -> List[np.ndarray]:
    """Frames as BGR uint8 arrays of one size; paths are read."""
    if len(frames) == 0:
        raise ValueError('inference_video needs at least one frame')
    images = []
    for i, frame in enumerate(frames):
        if isinstance(frame, (str, Path)):
            if not osp.isfile(frame):
                raise FileNotFoundError(f'frame {i} not found: {frame}')
            img = mmcv.imread(str(frame))
            if img is None:
                raise ValueError(f'cannot read frame {i}: {frame}')
        elif isinstance(frame, np.ndarray):
            img = frame
        else:
            raise TypeError(f'frame {i} must be an image array or a path, '
                            f'got {type(frame).__name__}')
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f'frame {i} must be (H, W, 3) BGR, got shape '
                             f'{img.shape}')
        if images and img.shape != images[0].shape:
            raise ValueError(f'frame {i} is {img.shape[:2]} (h, w) but frame '
                             f'0 is {images[0].shape[:2]}; all frames of a '
                             'video must have the same size')
        images.append(img)
    return images


def inference_video(model: nn.Module,
                    frames: Sequence[FrameType]) -> TrackDataSample:
    """Segment and track the instances of one video.

    The frames go through the config's test pipeline (see
    :func:`build_inference_pipeline`), then ``model.test_step``; a video
    longer than the model's clip runs in windows inside the model.

    Args:
        model (nn.Module): A model from :func:`init_model`.
        frames (Sequence[np.ndarray | str]): The video's L frames in order,
            as BGR (H, W, 3) arrays or image paths, all of one size.

    Returns:
        TrackDataSample: L frame samples, each with ``pred_track_instances``
        (``masks`` (k, H, W) bool at the original size, ``bboxes`` (k, 4)
        x1y1x2y2 in pixels, ``scores``, ``labels``, ``instances_id``).
    """
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        raise AttributeError('model.cfg is missing; build the model with '
                             'mmttsrn.apis.init_model')
    images = _read_frames(frames)
    num_frames = len(images)
    data = dict(
        img=images,
        img_id=list(range(num_frames)),
        frame_id=list(range(num_frames)),
        video_id=[0] * num_frames,
        video_length=[num_frames] * num_frames,
        ori_video_length=[num_frames] * num_frames)
    data = build_inference_pipeline(cfg)(data)
    with torch.no_grad():
        return model.test_step(pseudo_collate([data]))[0]
