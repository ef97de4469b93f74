"""Every change this project makes to third-party code, in one place.

Each patch names the versions it was written and tested for and is applied
only to those; with a newer release it is skipped, with a warning saying so,
rather than applied blindly. :data:`PATCH_STATUS` records what happened
(``collect_env`` prints it).

- ``ytviseval_numpy``: mmdet <= 3.3.0's ``YTVISeval.accumulate`` calls
  ``np.float``, removed in numpy 1.24; its module gets a numpy alias with it.
- ``mmengine_safe_checkpoint``: mmengine <= 0.10.7 calls ``torch.load``
  without ``weights_only``, which torch >= 2.6 turns on, so its full
  checkpoints do not load; its local-file loader is replaced by
  :func:`mmttsrn.engine.load_local_checkpoint` (still ``weights_only=True``).
- ``cpu_process_group`` (:func:`init_cpu_process_group`, called by the
  tools): mmengine <= 0.10.7's ``init_dist`` and DDP wrapper always bind a
  CUDA device, so a torchrun launch without CUDA starts gloo itself.
"""
import atexit
import gc
import logging
import types

import mmdet
import mmengine
import numpy as np
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.utils import digit_version

__all__ = ['PATCH_STATUS', 'apply_patches', 'init_cpu_process_group']

# Newest releases each patch was tested with.
TESTED_MMDET = '3.3.0'
TESTED_MMENGINE = '0.10.7'

PATCH_STATUS = {}


def _newer(version: str, tested: str) -> bool:
    return digit_version(version) > digit_version(tested)


def _skip(name: str, package: str, version: str, tested: str) -> None:
    PATCH_STATUS[name] = f'skipped ({package} {version} > tested {tested})'
    print_log(
        f'mmttsrn.compat: not applying {name!r}, written for {package} <= '
        f'{tested} (found {version}); see mmttsrn/compat.py if it is still '
        'needed',
        logger='current',
        level=logging.WARNING)


class _NumpyWithFloat(types.ModuleType):
    """numpy plus the ``np.float`` alias, for one module's eyes only."""
    float = float

    def __getattr__(self, name):
        return getattr(np, name)


def _patch_ytviseval_numpy() -> None:
    name = 'ytviseval_numpy'
    if hasattr(np, 'float'):
        PATCH_STATUS[name] = 'not needed (numpy has np.float)'
        return
    if _newer(mmdet.__version__, TESTED_MMDET):
        _skip(name, 'mmdet', mmdet.__version__, TESTED_MMDET)
        return
    from mmdet.evaluation.functional import ytviseval
    ytviseval.np = _NumpyWithFloat('numpy')
    PATCH_STATUS[name] = 'applied'


def _patch_mmengine_checkpoint_loader() -> None:
    name = 'mmengine_safe_checkpoint'
    if digit_version(torch.__version__) < digit_version('2.6.0'):
        PATCH_STATUS[name] = 'not needed (torch < 2.6)'
        return
    if _newer(mmengine.__version__, TESTED_MMENGINE):
        _skip(name, 'mmengine', mmengine.__version__, TESTED_MMENGINE)
        return
    from mmengine.runner.checkpoint import CheckpointLoader

    from .engine.checkpoint import load_local_checkpoint
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)
    PATCH_STATUS[name] = 'applied'


def apply_patches() -> None:
    """Apply the import-time patches (done by ``import mmttsrn``)."""
    _patch_ytviseval_numpy()
    _patch_mmengine_checkpoint_loader()


def _close_process_group() -> None:
    # The run's objects (the DDP wrapper holds the group) can sit in
    # reference cycles until the interpreter is torn down, and gloo aborts a
    # process whose group goes then: free them while Python still runs.
    gc.collect()
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def init_cpu_process_group(cfg: Config) -> None:
    """Start a gloo process group for a torchrun launch without CUDA.

    Does nothing unless ``cfg.launcher == 'pytorch'``, CUDA is absent and no
    group exists yet. mmengine then sees the group and does not start its
    own (which would bind a CUDA device), and ``cfg`` gets a DDP wrapper
    without device ids.
    """
    name = 'cpu_process_group'
    if cfg.get('launcher') != 'pytorch' or torch.cuda.is_available() or \
            dist.is_initialized():
        return
    if _newer(mmengine.__version__, TESTED_MMENGINE):
        _skip(name, 'mmengine', mmengine.__version__, TESTED_MMENGINE)
        return
    dist.init_process_group(backend='gloo')
    # Left to interpreter teardown (or torn down while another rank still
    # talks), gloo's threads can abort a process after its work is done.
    atexit.register(_close_process_group)
    cfg.setdefault(
        'model_wrapper_cfg',
        dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False)))
    PATCH_STATUS[name] = 'applied'
