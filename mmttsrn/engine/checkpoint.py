"""Let mmengine load its own checkpoints with torch's safe loader.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True`` and mmengine
0.10.7 calls it without that argument, so resuming (or ``load_from``) a full
training checkpoint fails on the non-tensor objects mmengine stores in it:
the message hub's ``HistoryBuffer`` logs (numpy arrays and scalars, and its
statistics methods, pickled as ``getattr(HistoryBuffer, 'mean')``). Rather
than turn the safe loader off, mmengine's local-file loader is replaced by one
that keeps ``weights_only=True`` and allows exactly those types while it
loads. Any other pickled object (or callable) in a file is still refused.
"""
import os.path as osp

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['MMENGINE_CHECKPOINT_GLOBALS', 'load_local_checkpoint']


def _numpy_globals() -> list:
    multiarray = np._core.multiarray if hasattr(np, '_core') else \
        np.core.multiarray
    scalar_types = set(np.sctypeDict.values())
    globals_ = [np.ndarray, np.dtype, *scalar_types,
                *{type(np.dtype(t)) for t in scalar_types}]
    # Pickles name numpy's reconstructors by module path, which moved from
    # numpy.core (1.x) to numpy._core (2.x): allow both spellings.
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        globals_ += [(multiarray._reconstruct, f'{module}._reconstruct'),
                     (multiarray.scalar, f'{module}.scalar')]
    return globals_


# getattr only looks up attributes; the safe unpickler still refuses to call
# anything that is not allowed itself.
MMENGINE_CHECKPOINT_GLOBALS = [HistoryBuffer, getattr, *_numpy_globals()]


@CheckpointLoader.register_scheme(prefixes='', force=True)
def load_local_checkpoint(filename: str, map_location=None) -> dict:
    """mmengine's loader for local files, with ``weights_only=True``."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found.')
    with torch.serialization.safe_globals(MMENGINE_CHECKPOINT_GLOBALS):
        return torch.load(
            filename, map_location=map_location, weights_only=True)
