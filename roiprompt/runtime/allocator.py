"""CPU runtime settings for the eager hot path, and a bound on the memory the process keeps.

glibc serves every allocation of 32 MB or more with a fresh ``mmap`` and unmaps it on free, so each of
LiteMedSAM's 67 MB stage-0 activations is zero-filled page by page again on every image (~210 k page faults,
~0.4 s of system time per image on 2 cores). :func:`configure_cpu_allocator` keeps blocks under
:data:`MMAP_THRESHOLD` (256 MiB) on the heap and trims the heap's top only when more than :data:`TRIM_THRESHOLD`
(512 MiB) is free there: the encoder's working set is reused image after image (at most a few hundred page
faults per image, results bit-identical), while a block of 256 MiB or more (only a very large image makes one) is
``mmap``-ed and given back as soon as it is freed. The same can be had without code through the environment variables
``MALLOC_MMAP_THRESHOLD_=268435456`` and ``MALLOC_TRIM_THRESHOLD_=536870912``.

The earlier settings (``M_MMAP_MAX=0``, trim threshold 2 GiB) were as fast but never gave anything back: whatever
one image's peak had made resident stayed resident for the rest of the process (after one 61 Mpx RGB image in an
eager one-shot run: 1,517 MiB kept for every later image, against 887 MiB now). With a lower trim threshold
(128 or 256 MiB) the heap top is trimmed and faulted in again on most images (14-134 k faults per image on a mix
of 0.1-8 Mpx images), hence 512 MiB.

Free memory in the middle of the heap is never trimmed by glibc on its own; :func:`release_memory` (called between
images by batch loops) returns it with ``malloc_trim(0)`` when the resident set has grown past a limit, so a long
streaming run stays bounded even after an image far larger than the rest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
M_ARENA_MAX = -8
MIB = 1 << 20
#: Blocks of this size or more are ``mmap``-ed (returned on free); smaller ones come from the heap.
MMAP_THRESHOLD = 256 * MIB
#: The heap's top is given back once more than this is free there.
TRIM_THRESHOLD = 512 * MIB
#: :func:`release_memory` trims only when the resident set exceeds this (a one-shot run needs ~1.0-1.1 GiB).
RELEASE_ABOVE = 1536 * MIB

_configured: bool | None = None  # None: not tried yet; True/False: the outcome of the one attempt
_libc: ctypes.CDLL | None | bool = False  # False: not looked up yet; None: not glibc


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (with ``mallopt`` and ``malloc_trim``), else None; looked up once."""
    global _libc
    if _libc is False:
        _libc = None
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                libc.mallopt.restype = ctypes.c_int
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                libc.malloc_trim.restype = ctypes.c_int
                _libc = libc
            except (OSError, AttributeError):  # no libc or a missing symbol: nothing to tune
                pass
    return _libc


def configure_cpu_allocator() -> bool:
    """Tune glibc malloc for large tensors: blocks under :data:`MMAP_THRESHOLD` on the heap, the heap's top kept
    up to :data:`TRIM_THRESHOLD` free (see the module docstring).

    Process-wide. Idempotent: only the first call does anything. A no-op off Linux/glibc (macOS, Windows, musl).
    Where glibc refuses a fixed mmap threshold that high, big blocks stay off ``mmap`` altogether
    (``M_MMAP_MAX=0``) as before; the bounded trim threshold and :func:`release_memory` still apply.

    Returns:
        True when glibc accepted the settings (now or on an earlier call), else False.
    """
    global _configured
    if _configured is not None:
        return _configured
    _configured = False
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success, 0 on error
    big_blocks = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) or bool(libc.mallopt(M_MMAP_MAX, 0))
    _configured = big_blocks and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not _configured:
        logger.warning("glibc mallopt refused the allocator settings; the encoder will run slower")
    return _configured


def share_main_arena() -> bool:
    """Make every thread allocate from the main heap (glibc ``M_ARENA_MAX=1``), for a process whose model runs
    outside the main thread (the app: a propagation thread, the web server's worker threads).

    A thread's own glibc arena is capped at 64 MiB, so LiteMedSAM's 67 MB activations are ``mmap``-ed and
    zero-filled again on every image there, whatever :func:`configure_cpu_allocator` set for the main heap
    (``benchmarks/app.py``, one run each: 1.17 -> 1.07 s per propagated image). Call it before such threads
    allocate. Process-wide; a no-op returning False off glibc.

    Returns:
        True when glibc accepted the setting.
    """
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, 1))


def resident_bytes() -> int | None:
    """This process's resident set size in bytes (``/proc/self/statm``), or None where there is no procfs."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def release_memory(above: int | None = RELEASE_ABOVE) -> bool:
    """Give the memory that malloc holds free back to the system (glibc ``malloc_trim(0)``), between images.

    Only when the resident set exceeds ``above`` bytes (None or 0: always), so a run whose working set is reused
    image after image pays nothing (one read of ``/proc/self/statm``); past the limit, freed heap pages are
    returned wherever they are (the heap's middle too, which glibc never trims on its own) and the next image
    faults in only what it uses. Results are unchanged: only where freed memory lives changes. Safe to call at any
    time from any thread; a no-op returning False off glibc.

    Returns:
        True when memory was trimmed (``malloc_trim`` ran), else False.
    """
    libc = _glibc()
    if libc is None:
        return False
    if above:
        rss = resident_bytes()
        if rss is None or rss <= above:
            return False
    libc.malloc_trim(0)
    return True
