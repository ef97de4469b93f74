"""Let mmengine load its own checkpoints with torch's safe loader.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True`` and mmengine
0.10.7 calls it without that argument, so resuming (or ``load_from``) a full
training checkpoint fails on the non-tensor objects mmengine stores in it:
the message hub's ``HistoryBuffer`` logs (numpy arrays and scalars, and its
statistics methods, pickled as ``getattr(HistoryBuffer, 'mean')``). Rather
than turn the safe loader off, mmengine's local-file loader is replaced by one
that keeps ``weights_only=True`` and allows exactly those types while it
loads (registered by :mod:`mmttsrn.compat`). Any other pickled object (or
callable) in a file is still refused.
"""
import logging
import os.path as osp
import pickle
from collections.abc import Mapping

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log

__all__ = [
    'MMENGINE_CHECKPOINT_GLOBALS', 'load_local_checkpoint',
    'load_pretrained_file'
]


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


def load_local_checkpoint(filename: str, map_location=None) -> dict:
    """mmengine's loader for local files, with ``weights_only=True``."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found.')
    with torch.serialization.safe_globals(MMENGINE_CHECKPOINT_GLOBALS):
        return torch.load(
            filename, map_location=map_location, weights_only=True)


def load_pretrained_file(path: str, what: str) -> Mapping:
    """Read a pretrained-weights file given by the user (``what`` names it).

    Plain state dicts load with ``weights_only=True``. Checkpoints of other
    projects' training code may also pickle Python objects (e.g. argparse
    arguments); those are read with ``weights_only=False`` after a warning,
    since the user chose the file.
    """
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} checkpoint {path} does not exist')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError:
        print_log(
            f'{path} holds more than tensors; loading it with '
            'weights_only=False (only do this for trusted files)',
            logger='current',
            level=logging.WARNING)
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'{what} checkpoint {path} must hold a dict, got '
                        f'{type(checkpoint).__name__}')
    return checkpoint
