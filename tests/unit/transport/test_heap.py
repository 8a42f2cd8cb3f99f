"""heap.keep_freed: a thread that mallocs 4 MiB blocks, holds a few and frees them together (what libzmq's
receiving thread and the application do with a window of large frames) faults fresh pages in for every
block by default, and none once freed memory is kept. Each case runs in a fresh interpreter: the
setting is process-wide and only ever raised."""

import platform
import subprocess
import sys

import pytest

from rollspec.transport import heap

_SCRIPT = """
import ctypes, importlib.util, resource, sys, threading
spec = importlib.util.spec_from_file_location("heap", sys.argv[2])  # the module alone: no torch import
heap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(heap)
if sys.argv[1] == "keep":
    assert heap.keep_freed(64 << 20) == 64 << 20
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
faults = []
def run():
    held = []
    for i in range(80):
        block = libc.malloc(4 << 20)
        ctypes.memset(block, 1, 4 << 20)
        held.append(block)
        if len(held) == 8:  # a window's worth, freed together
            for block in held:
                libc.free(block)
            held.clear()
        if i in (15, 79):
            faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt)
thread = threading.Thread(target=run)
thread.start()
thread.join()
print((faults[1] - faults[0]) / 64)
"""


def _faults_per_block(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode, heap.__file__], capture_output=True, text=True, check=True)
    return float(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc heap settings")
def test_kept_freed_memory_removes_the_page_faults_of_reused_large_blocks():
    assert _faults_per_block("default") > 500  # 1024 pages per 4 MiB block, faulted in again
    assert _faults_per_block("keep") < 10


def test_the_threshold_is_only_ever_raised():
    first = heap.keep_freed(1)
    if first == 0:
        pytest.skip("not glibc")
    assert first >= heap.MMAP_THRESHOLD  # never below the size up to which frames come from the heap
    assert heap.keep_freed(first + (1 << 20)) == first + (1 << 20)
    assert heap.keep_freed(1) == first + (1 << 20)
