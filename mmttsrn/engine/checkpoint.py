"""Loading checkpoints and pretrained files with torch's safe unpickler.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True`` and mmengine
0.10.7 calls it without that argument, so resuming (or ``load_from``) a full
training checkpoint fails on the non-tensor objects mmengine stores in it:
the message hub's ``HistoryBuffer`` logs (numpy arrays and scalars, and its
statistics methods, pickled as ``getattr(HistoryBuffer, 'mean')``).
:func:`load_local_checkpoint` keeps ``weights_only=True`` and allows exactly
those objects; :mod:`mmttsrn.compat` registers it as mmengine's loader for
local files. Any other pickled object or callable is refused, and so is
``getattr`` on anything but ``HistoryBuffer``'s statistics methods.
"""
import logging
import os.path as osp
import pickle
import zipfile
from collections.abc import Mapping
from typing import Callable

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log

__all__ = [
    'MMENGINE_CHECKPOINT_GLOBALS', 'UnsafeCheckpointError',
    'check_checkpoint_file', 'load_local_checkpoint', 'load_pretrained_file'
]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A file pickles objects that the safe loader does not allow."""


class _RefusedGetattr(Exception):
    """Raised inside the unpickler; not an UnpicklingError, so torch does
    not rewrap it in advice to use ``weights_only=False``."""


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


# HistoryBuffer's built-in statistics; it fills its registry with them only
# when the first buffer is made, which a fresh process has not done yet.
_HISTORY_BUFFER_STATISTICS = ('current', 'max', 'mean', 'min')


def _history_buffer_getattr(obj, name: str) -> Callable:
    """``getattr`` as mmengine checkpoints use it, and nothing more.

    Pickle protocol 2 (torch's default) writes a method as
    ``getattr(cls, name)``; mmengine checkpoints hold only
    ``HistoryBuffer``'s statistics methods that way.
    """
    methods = {
        *_HISTORY_BUFFER_STATISTICS,
        *getattr(HistoryBuffer, '_statistics_methods', {})
    }
    if obj is not HistoryBuffer or name not in methods:
        raise _RefusedGetattr(
            f'getattr({getattr(obj, "__name__", type(obj).__name__)}, '
            f'{name!r}) is not allowed: only HistoryBuffer statistics '
            f'methods {sorted(methods)} are')
    return getattr(HistoryBuffer, name)


MMENGINE_CHECKPOINT_GLOBALS = [
    HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'),
    *_numpy_globals()
]


def check_checkpoint_file(path: str, what: str = 'checkpoint') -> str:
    """Return the expanded ``path`` if it looks like a ``torch.save`` file.

    ``torch.save`` writes a zip archive (or, in its legacy format, a pickle
    starting with a protocol opcode); anything else (text, an image, random
    bytes) is refused here instead of failing inside the unpickler.

    Raises:
        FileNotFoundError: If there is no such file.
        ValueError: ``not a checkpoint file: PATH``.
    """
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} file {path} does not exist')
    with open(path, 'rb') as f:
        head = f.read(2)
    if not zipfile.is_zipfile(path) and not (
            len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        raise ValueError(f'not a checkpoint file: {path} (torch.save '
                         'writes a zip archive or a pickle)')
    return path


# Unpickler errors that mean the bytes are no pickle at all.
_NOT_A_PICKLE = ('Unsupported operand', 'invalid load key', 'ran out of input')


def _unpickler_reason(message: str) -> str:
    """The unpickler's own error inside torch's wrapped message."""
    marker = 'WeightsUnpickler error:'
    text = message.split(marker, 1)[1] if marker in message else \
        message.split('\n\n', 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else message


def _safe_load(path: str, map_location, what: str):
    """``torch.load(weights_only=True)`` with errors naming the file."""
    try:
        with torch.serialization.safe_globals(MMENGINE_CHECKPOINT_GLOBALS):
            return torch.load(
                path, map_location=map_location, weights_only=True)
    except _RefusedGetattr as err:
        raise UnsafeCheckpointError(
            f'{what} {path} pickles objects the safe loader does not '
            f'allow: {err}') from None
    except pickle.UnpicklingError as err:
        # torch's message advises weights_only=False, which is not advice
        # for a file from elsewhere: keep only what was refused.
        reason = _unpickler_reason(str(err))
        if any(key in reason for key in _NOT_A_PICKLE):
            raise ValueError(
                f'not a checkpoint file: {path} ({reason})') from None
        raise UnsafeCheckpointError(
            f'{what} {path} pickles objects the safe loader does not '
            f'allow: {reason}') from None
    except (RuntimeError, EOFError, KeyError, ValueError) as err:
        raise ValueError(f'not a checkpoint file: {path} '
                         f'({type(err).__name__}: {err})') from None


def load_local_checkpoint(filename: str, map_location=None) -> dict:
    """mmengine's loader for local files, with ``weights_only=True``."""
    path = check_checkpoint_file(filename)
    return _safe_load(path, map_location, 'checkpoint')


def load_pretrained_file(path: str,
                         what: str,
                         allow_unsafe: bool = False) -> Mapping:
    """Read a pretrained-weights file given by the user (``what`` names it).

    The file is read with ``weights_only=True``. Checkpoints of other
    projects' training code may also pickle Python objects (e.g. argparse
    arguments), which run code when unpickled: those are refused unless
    ``allow_unsafe`` (an explicit user flag, for files the user trusts).

    Raises:
        UnsafeCheckpointError: If the file holds other objects and
            ``allow_unsafe`` is False.
        TypeError: If the file does not hold a dict.
    """
    path = check_checkpoint_file(path, f'{what} checkpoint')
    try:
        checkpoint = _safe_load(path, 'cpu', f'{what} checkpoint')
    except UnsafeCheckpointError as err:
        if not allow_unsafe:
            raise UnsafeCheckpointError(
                f'{err}. Unpickling such objects can run code; if you '
                'trust the file, pass --unsafe-load to the converter in '
                'tools/model_converters/, which writes plain tensors') \
                from None
        print_log(
            f'{path}: unpickling with weights_only=False, as asked',
            logger='current',
            level=logging.WARNING)
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'{what} checkpoint {path} must hold a dict, got '
                        f'{type(checkpoint).__name__}')
    return checkpoint
