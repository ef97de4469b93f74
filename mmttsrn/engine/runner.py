"""mmengine's Runner, with DataLoader workers that end with their parent
and, on CPU, a malloc that reuses freed memory."""
import ctypes
import os
import signal
import sys
from functools import partial
from typing import Callable, Optional

import torch
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from .malloc import keep_freed_memory

__all__ = ['TTSRNRunner', 'die_with_parent']

_PR_SET_PDEATHSIG = 1


def _worker_init(parent_pid: int, init_fn: Optional[Callable],
                 worker_id: int) -> None:
    """Ask the kernel to kill this worker when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), 'prctl(PR_SET_PDEATHSIG) failed')
    # The parent may have died before prctl: the worker was re-parented.
    if os.getppid() != parent_pid:
        os._exit(1)
    if init_fn is not None:
        init_fn(worker_id)


def die_with_parent(dataloader: DataLoader) -> DataLoader:
    """Make the worker processes of ``dataloader`` die with this process.

    A worker busy loading (or a persistent one) outlives a parent killed by
    SIGKILL, holding its memory, until it next looks at its parent; on
    Linux ``PR_SET_PDEATHSIG`` ends it at once. Elsewhere nothing changes.
    The loader's own ``worker_init_fn`` (mmengine's seeding) still runs.
    """
    if sys.platform.startswith('linux') and dataloader.num_workers > 0:
        dataloader.worker_init_fn = partial(_worker_init, os.getpid(),
                                            dataloader.worker_init_fn)
    return dataloader


@RUNNERS.register_module()
class TTSRNRunner(Runner):
    """:class:`mmengine.runner.Runner` whose DataLoaders use
    :func:`die_with_parent`; the tools use it unless a config sets
    ``runner_type``.

    Without a GPU and with ``env_cfg.keep_freed_memory=True`` it also calls
    :func:`keep_freed_memory` (before any DataLoader worker is forked): off
    by default, since the heap then keeps its peak (a T = 36 training step
    of the paper model peaked at 12.4 GiB instead of 5.7 GiB).
    """

    def setup_env(self, env_cfg: dict) -> None:
        super().setup_env(env_cfg)
        keep = env_cfg.get('keep_freed_memory', False)
        if not isinstance(keep, bool):
            raise TypeError('env_cfg.keep_freed_memory must be True or '
                            f'False, got {keep!r}')
        if keep and not torch.cuda.is_available() and keep_freed_memory():
            print_log(
                'CPU run: malloc keeps freed memory for reuse '
                '(env_cfg.keep_freed_memory=True): fewer page faults, '
                'higher resident memory',
                logger='current')

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        dataloader = Runner.build_dataloader(dataloader, seed,
                                             diff_rank_seed)
        if isinstance(dataloader, DataLoader):
            die_with_parent(dataloader)
        return dataloader
