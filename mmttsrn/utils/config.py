"""Config handling shared by the tools and :func:`mmttsrn.apis.init_model`."""
import os.path as osp
from collections import defaultdict
from typing import Any, Dict, Iterator, List, Optional, Tuple

from mmengine.config import Config

__all__ = ['CLIP_LENGTH_TYPES', 'load_tool_config', 'sync_num_frames']

#: The types that take the clip length T as ``num_frames``: the heads, the
#: train clip sampler and the image pseudo-video dataset.
CLIP_LENGTH_TYPES = ('TTSRNHead', 'Mask2FormerTrackHead', 'ClipFrameSample',
                     'ImagePseudoVideoDataset')


def _type_name(type_: Any) -> Optional[str]:
    """'ClipFrameSample' for 'ClipFrameSample', 'mmdet.ClipFrameSample' or
    the class itself; None for anything else."""
    if isinstance(type_, str):
        return type_.rsplit('.', 1)[-1]
    return getattr(type_, '__name__', None)


def _clip_length_sites(node: Any, path: str) -> Iterator[Tuple[str, dict]]:
    """Yield (cfg-options key, dict) of every dict under ``node`` whose type
    is in :data:`CLIP_LENGTH_TYPES`."""
    if isinstance(node, dict):
        if _type_name(node.get('type')) in CLIP_LENGTH_TYPES:
            yield f'{path}num_frames', node
        for key, value in node.items():
            yield from _clip_length_sites(value, f'{path}{key}.')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _clip_length_sites(value, f'{path}{i}.')


def sync_num_frames(cfg: Config) -> Config:
    """Set the clip length T of every part of ``cfg`` from its top-level
    ``num_frames``, in place.

    T is written once, as the top-level ``num_frames`` (the dataset configs
    define it). The ``num_frames`` of every dict of a type in
    :data:`CLIP_LENGTH_TYPES` (``model.track_head``, each ``ClipFrameSample``
    and ``ImagePseudoVideoDataset``, wherever they are) is set to it:

    - left out, it is filled in;
    - set, and all set ones agree but not with ``num_frames``, they are
      values a base file wrote before a child config or ``--cfg-options
      num_frames=...`` changed T, and they follow it (so a config
      inheriting the paper's with ``num_frames = 18`` is an 18-frame model,
      pipelines and head);
    - set to different values, one was overridden alone (say ``--cfg-options
      model.track_head.num_frames=18``): a ValueError names the keys and
      their values and asks for ``num_frames`` instead.

    Without a top-level ``num_frames``, T is the one value the set keys
    agree on (and becomes ``cfg.num_frames``); a config with neither is left
    as it is.

    Args:
        cfg (Config): A loaded config, after ``merge_from_dict``.

    Returns:
        Config: ``cfg``.
    """
    sites = [
        site for key, value in cfg.items()
        for site in _clip_length_sites(value, f'{key}.')
    ]
    keys_by_value: Dict[Any, List[str]] = defaultdict(list)
    for key, site in sites:
        if site.get('num_frames') is not None:
            keys_by_value[site['num_frames']].append(key)
    num_frames = cfg.get('num_frames')
    if len(keys_by_value) > 1:
        found = '; '.join(f'{value} at {", ".join(keys)}'
                          for value, keys in keys_by_value.items())
        raise ValueError(
            f'the clip length is set by the top-level num_frames '
            f'({num_frames}), but the keys that take it disagree: {found}. '
            'Set num_frames alone (e.g. --cfg-options num_frames=18); it '
            'sets all of them.')
    if num_frames is None:
        if not keys_by_value:
            return cfg
        num_frames = next(iter(keys_by_value))
    for _, site in sites:
        site['num_frames'] = num_frames
    cfg.num_frames = num_frames
    return cfg


def load_tool_config(config: str,
                     launcher: str = 'none',
                     cfg_options: Optional[dict] = None,
                     work_dir: Optional[str] = None) -> Config:
    """Load a config as the tools do.

    ``cfg_options`` are merged, then :func:`sync_num_frames` sets the clip
    length everywhere. The work dir is, by priority: ``work_dir``, the
    config's own, then ``./work_dirs/<config name>``. Only reads the config:
    the tools start a process group
    (:func:`mmttsrn.compat.init_cpu_process_group`) themselves.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file {config} does not exist')
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    sync_num_frames(cfg)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    return cfg
