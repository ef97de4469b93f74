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

    Without a GPU it also calls :func:`keep_freed_memory` (before any
    DataLoader worker is forked) as ``env_cfg.keep_freed_memory`` says:
    True for every run, ``'test'`` (the configs' default) for :meth:`test`
    only, False never. Training keeps the default malloc, since the heap
    would keep its peak (a T = 36 training step of the paper model peaked
    at 12.4 GiB instead of 5.7 GiB); inference pays little memory for it
    (docs/train_test.md).
    """

    def setup_env(self, env_cfg: dict) -> None:
        super().setup_env(env_cfg)
        keep = env_cfg.get('keep_freed_memory', False)
        if not (isinstance(keep, bool) or keep == 'test'):
            raise TypeError('env_cfg.keep_freed_memory must be True, False '
                            f"or 'test', got {keep!r}")
        self._keep_freed_memory = keep
        if keep is True:
            self._keep_freed_memory_on_cpu()

    def _keep_freed_memory_on_cpu(self) -> None:
        if not torch.cuda.is_available() and keep_freed_memory():
            print_log(
                'CPU run: malloc keeps freed memory for reuse '
                '(env_cfg.keep_freed_memory): fewer page faults, higher '
                'resident memory',
                logger='current')

    def test(self) -> dict:
        """:meth:`Runner.test`; with ``env_cfg.keep_freed_memory='test'``
        malloc keeps freed memory from here on (the test DataLoader is
        built after this)."""
        if self._keep_freed_memory == 'test':
            self._keep_freed_memory_on_cpu()
        return super().test()

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        dataloader = Runner.build_dataloader(dataloader, seed,
                                             diff_rank_seed)
        if isinstance(dataloader, DataLoader):
            die_with_parent(dataloader)
        return dataloader
