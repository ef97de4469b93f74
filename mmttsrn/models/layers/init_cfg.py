"""Reading an OpenMMLab ``init_cfg``."""
from typing import Optional

from mmdet.utils import OptMultiConfig

__all__ = ['pretrained_cfg']


def pretrained_cfg(init_cfg: OptMultiConfig) -> Optional[dict]:
    """The ``Pretrained`` entry of ``init_cfg`` (a dict or a list of dicts),
    or None when the module is not loaded from a checkpoint."""
    cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
    for cfg in cfgs:
        if cfg is not None and cfg.get('type') == 'Pretrained':
            return cfg
    return None
