"""CUDA graphs of an inference function, one per input signature."""
from collections import OrderedDict
from contextlib import nullcontext
from typing import Any, Callable, NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from .cast_parameters import CastParameters
from .graph_capture import capture_paths

__all__ = ['CUDAGraphCache']


def _clone(outputs: Any) -> Any:
    """Clones of the tensors in nested lists, tuples and dicts."""
    if isinstance(outputs, Tensor):
        return outputs.clone()
    if isinstance(outputs, dict):
        return {key: _clone(value) for key, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_clone(value) for value in outputs)
    return outputs


class _Graph(NamedTuple):
    graph: Any
    inputs: Tuple[Tensor, ...]
    outputs: Any
    params: Optional[CastParameters]


class CUDAGraphCache:
    """Run an inference function through CUDA graphs.

    The first call with a new signature (shapes, dtypes and device of the
    arguments, and the autocast state) runs ``fn`` ``warmup`` times on a
    side stream, as ``torch.cuda.graph`` asks (cuBLAS and cuDNN set
    themselves up there), on the paths of a capture
    (:func:`capture_paths`), then records its kernels into a graph. Every call
    copies its arguments into the graph's input tensors, replays the graph
    and returns clones of its outputs: the host launches one graph instead
    of thousands of small kernels, which is what bounds a model's latency
    when its kernels are short. ``fn`` must not read device values back to
    the host or choose shapes from them (see :func:`is_graph_capture`).

    Calls on CPU tensors or with autograd on run ``fn`` as it is. The graphs
    share one memory pool: one graph runs at a time and its outputs are
    cloned before the next. They keep the addresses of the parameters they
    read, so the owner calls :meth:`clear` when its parameters move.

    With ``module``, a capture under autocast first runs ``fn`` once more to
    find the parameters of ``module`` that it only casts to the autocast
    dtype (:class:`CastParameters`), and records the graph on copies in that
    dtype: the graph then holds no cast kernels for them. Before each replay
    the copies of parameters changed in place since are cast again.

    Args:
        fn (Callable): Takes tensors, returns tensors nested in lists,
            tuples and dicts.
        max_graphs (int): Graphs kept; the least recently used one is
            dropped first.
        warmup (int): Eager runs before a capture. Defaults to 2.
        module (nn.Module, optional): The module whose parameters ``fn``
            reads, to cast once per capture. Defaults to None.
    """

    def __init__(self,
                 fn: Callable,
                 max_graphs: int,
                 warmup: int = 2,
                 module: Optional[nn.Module] = None) -> None:
        if not isinstance(max_graphs, int) or max_graphs < 1:
            raise ValueError(
                f'max_graphs must be a positive int, got {max_graphs!r}')
        self.fn = fn
        self.max_graphs = max_graphs
        self.warmup = warmup
        self.module = module
        self._graphs: 'OrderedDict[tuple, _Graph]' = OrderedDict()
        self._pool = None

    def __len__(self) -> int:
        return len(self._graphs)

    def clear(self) -> None:
        """Drop every graph (and with them their memory)."""
        self._graphs.clear()
        self._pool = None

    def __getstate__(self) -> dict:
        # Copies (deepcopy, pickle) start without graphs: a graph and its
        # memory pool belong to this process's device state.
        return dict(self.__dict__, _graphs=OrderedDict(), _pool=None)

    def __call__(self, *args: Tensor) -> Any:
        if torch.is_grad_enabled() or not all(
                isinstance(a, Tensor) and a.is_cuda for a in args):
            return self.fn(*args)
        device = args[0].device
        key = (tuple((a.shape, a.dtype, a.device) for a in args),
               torch.is_autocast_enabled('cuda'),
               torch.get_autocast_dtype('cuda'))
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(args, device)
            self._graphs[key] = entry
            if len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
            for static, arg in zip(entry.inputs, args):
                static.copy_(arg)
        if entry.params is not None:
            entry.params.refresh()
        entry.graph.replay()
        return _clone(entry.outputs)

    def _capture(self, args: Tuple[Tensor, ...],
                 device: torch.device) -> _Graph:
        """Warm ``fn`` up and record it on copies of ``args``."""
        inputs = tuple(a.clone() for a in args)
        # The graph holds no autocast cache entries: they would be freed
        # when the caller's autocast region ends.
        autocast = torch.autocast(
            'cuda',
            dtype=torch.get_autocast_dtype('cuda'),
            enabled=torch.is_autocast_enabled('cuda'),
            cache_enabled=False)
        params = None
        with torch.cuda.device(device):
            if self.module is not None and torch.is_autocast_enabled('cuda'):
                with autocast, capture_paths():
                    params = CastParameters.find(
                        self.module, torch.get_autocast_dtype('cuda'),
                        self.fn, *inputs)
            on_copies = nullcontext() if params is None else params.swapped()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), autocast, on_copies, \
                    capture_paths():
                for _ in range(self.warmup):
                    self.fn(*inputs)
            torch.cuda.current_stream().wait_stream(side)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            on_copies = nullcontext() if params is None else params.swapped()
            try:
                with torch.cuda.graph(graph, pool=self._pool), autocast, \
                        on_copies:
                    outputs = self.fn(*inputs)
            except RuntimeError as error:
                name = getattr(self.fn, '__qualname__', repr(self.fn))
                raise RuntimeError(
                    f'CUDA graph capture of {name} failed ({error}); it '
                    'needs a function that launches '
                    'its kernels on the current stream and never waits '
                    'for the device') from error
        return _Graph(graph, inputs, outputs, params)
