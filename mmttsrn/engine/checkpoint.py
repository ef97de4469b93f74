"""Let torch >= 2.6's safe checkpoint loader read what mmengine writes.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True`` and mmengine
0.10.7 calls it without that argument, so resuming (or ``load_from``) a full
training checkpoint fails on the non-tensor objects mmengine stores in it:
numpy arrays and scalars in the message hub's ``HistoryBuffer`` logs. Rather
than turn the safe loader off, we allow exactly those types; any other pickled
object in a file is still refused.
"""
import numpy as np
import torch
from mmengine.logging import HistoryBuffer

__all__ = ['MMENGINE_CHECKPOINT_GLOBALS', 'allow_mmengine_checkpoints']


def _numpy_globals() -> list:
    multiarray = np._core.multiarray if hasattr(np, '_core') else \
        np.core.multiarray
    dtype_classes = [type(np.dtype(t)) for t in np.sctypeDict.values()]
    globals_ = [np.ndarray, np.dtype, *dtype_classes,
                *set(np.sctypeDict.values())]
    # Pickles name numpy's reconstructors by module path, which moved from
    # numpy.core (1.x) to numpy._core (2.x): allow both spellings.
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        globals_ += [(multiarray._reconstruct, f'{module}._reconstruct'),
                     (multiarray.scalar, f'{module}.scalar')]
    return globals_


MMENGINE_CHECKPOINT_GLOBALS = [HistoryBuffer, *_numpy_globals()]


def allow_mmengine_checkpoints() -> None:
    """Add the types of mmengine checkpoints to torch's safe globals."""
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(MMENGINE_CHECKPOINT_GLOBALS)
