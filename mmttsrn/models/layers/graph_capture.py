"""Whether the running ops are being recorded into a graph."""
import torch

__all__ = ['is_graph_capture', 'is_stream_capturing']


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
    """
    return (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_compiling()
            or torch.compiler.is_exporting() or is_stream_capturing())
