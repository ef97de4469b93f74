"""Config handling shared by tools/train.py and tools/test.py."""
import atexit
import os.path as osp
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.config import Config


def _close_process_group() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def load_tool_config(config: str,
                     launcher: str = 'none',
                     cfg_options: Optional[dict] = None,
                     work_dir: Optional[str] = None) -> Config:
    """Load a config as the tools do.

    The work dir is, by priority: ``work_dir``, the config's own, then
    ``./work_dirs/<config name>``. A torchrun launch on a machine without
    CUDA starts the process group with gloo here, since mmengine's
    ``init_dist`` and DDP wrapper always bind a CUDA device; torchrun then
    works on CPU too.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file {config} does not exist')
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    if launcher == 'pytorch' and not torch.cuda.is_available() and \
            not dist.is_initialized():
        dist.init_process_group(backend='gloo')
        # Left to interpreter teardown (or torn down while another rank still
        # talks), gloo's threads can abort a process after its work is done.
        atexit.register(_close_process_group)
        # mmengine's default DDP wrapper pins the module to a CUDA device.
        cfg.setdefault(
            'model_wrapper_cfg',
            dict(
                type='MMDistributedDataParallel',
                device_ids=None,
                broadcast_buffers=False,
                find_unused_parameters=cfg.get('find_unused_parameters',
                                               False)))
    return cfg
