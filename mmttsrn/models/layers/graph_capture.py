"""Whether the running ops are being recorded into a graph."""
from contextlib import contextmanager
from typing import Iterator

import torch

__all__ = ['is_graph_capture', 'is_stream_capturing', 'capture_paths']

# Set by capture_paths().
_capture_paths = False


def is_stream_capturing() -> bool:
    """Whether the current CUDA stream is being captured into a CUDA graph
    (False without CUDA, and without initialising it)."""
    return (torch.cuda.is_initialized()
            and torch.cuda.is_current_stream_capturing())


def is_graph_capture() -> bool:
    """Whether a graph is being traced (``torch.jit.trace``), exported
    (ONNX, ``torch.export``), compiled (``torch.compile``) or captured
    (CUDA graphs).

    Data-dependent shortcuts (a host read of a mask, a loop whose length
    depends on sizes, in-place writes into slices) are kept out of graphs.
    Also True inside :func:`capture_paths`.
    """
    # is_compiling() first: code being compiled then reads nothing else,
    # so no guard on _capture_paths makes it compile again outside it.
    return (torch.compiler.is_compiling() or _capture_paths
            or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_exporting() or is_stream_capturing())


@contextmanager
def capture_paths() -> Iterator[None]:
    """Within the context, :func:`is_graph_capture` is True: eager runs take
    the paths that a graph capture records (for the runs before a CUDA
    graph capture, which should run the kernels it will record)."""
    global _capture_paths
    previous = _capture_paths
    _capture_paths = True
    try:
        yield
    finally:
        _capture_paths = previous
