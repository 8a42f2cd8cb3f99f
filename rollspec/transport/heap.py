"""glibc heap settings for a process that receives large zmq frames.

libzmq's I/O thread mallocs each received frame (a 4 MiB tensor: one 4 MiB block, from that thread's
arena) and the application frees it once the tensor is dropped. glibc gives memory at the top of an
arena back to the kernel as soon as more than its trim threshold (by default twice the largest block
freed so far, about 8 MiB here) is free there, and a non-main arena's 64 MiB heaps go away whole once
empty. With a window of frames alive at once the top keeps crossing that threshold, so the next frame
lands on pages the kernel must fault in and zero again: 70-400 minor faults per 4 MiB message measured
in the receiving libzmq thread, against 4-20 for raw PULL, which never holds more than one frame.
Keeping about a receive window's worth of freed memory removes them (BENCHMARKS.md, Transport).
"""

import ctypes
import platform
import threading

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""Blocks above this are mmapped (and unmapped when freed). Fixing the trim threshold turns off glibc's
own adjustment of this one, so it is set too, to the most that adjustment reaches on 64-bit (its
DEFAULT_MMAP_THRESHOLD_MAX): frames up to 32 MiB come from the heap, as they do once glibc has adapted."""

_lock = threading.Lock()
_kept = 0  # the trim threshold set so far (only ever raised)


def keep_freed(nbytes: int) -> int:
    """Let glibc keep up to `nbytes` (at least MMAP_THRESHOLD) freed at the top of each heap instead of
    returning it to the kernel. Process-wide and only ever raised; a no-op without glibc. Returns the
    threshold now in force (0: not glibc, or mallopt refused)."""
    global _kept
    nbytes = max(nbytes, MMAP_THRESHOLD)
    with _lock:
        if nbytes <= _kept:
            return _kept
        if platform.libc_ver()[0] != "glibc":
            return 0
        libc = ctypes.CDLL(None)
        if not (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, nbytes)):
            return 0
        _kept = nbytes
        return _kept
