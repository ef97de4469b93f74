"""Let glibc's malloc reuse freed memory (CPU training and inference).

glibc serves every block above its mmap threshold (at most 32 MiB) with a
mapping of its own and unmaps it on ``free``. A CPU training step of a video
model allocates and frees hundreds of such tensors (the activations of T
frames, the (heads, L, S) attention weights of a clip), so the kernel maps,
zeroes and faults in fresh pages for each of them: at T = 8 frames of
300x540 that was a fifth to a third of TT-SRN's step time and over 40% of
Mask2Former-VIS's (``docs/benchmark.md``). With mmap off and a high trim
threshold, freed blocks stay in the heap and are reused. The price is
resident memory: the heap does not shrink after a peak and fragments (peak
RSS ~1.8x on a 36-frame inference run, 2.2x on a 36-frame training step),
which is why the tools do it only when asked
(``env_cfg = dict(keep_freed_memory=True)``, CPU runs).
"""
import ctypes
import platform

__all__ = ['keep_freed_memory']

# mallopt parameters of glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory(trim_threshold: int = 2**31 - 1) -> bool:
    """Make this process's glibc malloc keep and reuse freed memory.

    Settings apply to later allocations, and to worker processes forked
    afterwards.

    Args:
        trim_threshold (int): Free memory at the top of the heap beyond
            this many bytes is still given back to the system. Defaults to
            the largest value glibc takes (2 GiB - 1).

    Returns:
        bool: Whether both settings took effect (False on a C library
        other than glibc, e.g. macOS or musl, where nothing changes).
    """
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return False
    mallopt = getattr(ctypes.CDLL(None), 'mallopt', None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # mallopt returns 1 on success.
    return (mallopt(_M_MMAP_MAX, 0) == 1
            and mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1)
