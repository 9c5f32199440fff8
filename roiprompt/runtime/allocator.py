"""CPU runtime settings for the eager hot path.

glibc serves every allocation of 32 MB or more with a fresh ``mmap`` and unmaps it on free, so each of
LiteMedSAM's 67 MB stage-0 activations is zero-filled page by page again on every image (~245 k page faults,
~0.4 s of system time per image on 2 cores). Keeping large blocks on the heap and never trimming it removes
that cost; results are bit-identical. The same can be had without code through the environment variables
``MALLOC_MMAP_MAX_=0`` and ``MALLOC_TRIM_THRESHOLD_=2147483647``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_MAX = -4
_TRIM_THRESHOLD = 2**31 - 1

_configured: bool | None = None  # None: not tried yet; True/False: the outcome of the one attempt


def configure_cpu_allocator() -> bool:
    """Tune glibc malloc for large tensors: no ``mmap`` for big blocks, no heap trimming.

    Process-wide and irreversible (memory freed by tensors stays with the process for reuse). Idempotent:
    only the first call does anything. A no-op off Linux/glibc (macOS, Windows, musl).

    Returns:
        True when glibc accepted both settings (now or on an earlier call), else False.
    """
    global _configured
    if _configured is not None:
        return _configured
    _configured = False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no libc or no mallopt symbol: nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error
    _configured = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    if not _configured:
        logger.warning("glibc mallopt refused the allocator settings; the encoder will run slower")
    return _configured
