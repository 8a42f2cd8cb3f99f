"""The engine's C kernels for fp32 on CPU (kernels/*.c: small-row GEMM, attention of a few new
tokens over the KV cache, a whole decoder layer, sampling and the acceptance rule, EAGLE and draft-model draft chains,
a step's tokens and hidden states into the engine's stores), compiled on first use and loaded with ctypes.

Why C at all: at the sizes rollouts decode (1-16 rows, a few heads), MKL's sgemm, torch's SDPA and
the ~40 ops of a layer cost several times the arithmetic they do (see small_gemm.py,
small_attention.py, fused_layer.py and kernels/sampling.c).

The library is built with the system C compiler (`-march=native`, ~1 s) into
ROLLSPEC_KERNEL_CACHE (default ~/.cache/rollspec/kernels), keyed by sources, flags, compiler and
CPU flags, and renamed into place whole (rollspec/native_build.py), so concurrent processes never
load a partial file.
Without a compiler or AVX-512F, or with ROLLSPEC_CPU_KERNELS=0, `library()` is None and callers
use torch: same results up to float rounding.
"""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import threading
from pathlib import Path

from rollspec import native_build

log = logging.getLogger(__name__)

SOURCES = tuple(Path(__file__).with_name("kernels") / name for name in ("small_gemm.c", "attention.c", "layer.c", "sampling.c", "eagle_chain.c", "draft_chain.c", "batch.c", "verify_step.c", "mtp_chain.c", "store.c"))
FLAGS = ("-O3", "-march=native", "-std=c11", "-shared", "-fPIC")

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_loaded = False
_enabled = os.environ.get("ROLLSPEC_CPU_KERNELS", "1") != "0"

_long, _ptr, _int = ctypes.c_long, ctypes.c_void_p, ctypes.c_int
_SIGNATURES = {
    "small_gemm": (None, [_int] * 3 + [_ptr, _long, _ptr, _ptr, _long, _ptr, _long]),
    "small_attention": (_int, [_int] * 6 + [ctypes.c_float] + ([_ptr] + [_long] * 3) * 3 + [_ptr, _long, _long]
                        + [_ptr] + [_long] * 3),
    "decoder_layer": (_int, [_int] * 7 + [ctypes.c_float, _int] + [_ptr] * 8 + [_ptr, _long, _long, _long, _int, _int, _int]
                      + [_ptr, _long, _long] * 2 + [_ptr]),
    "eagle_chain": (_int, [_int] * 8 + [ctypes.c_float] + [_ptr] * 4 + [_int, _ptr, _long] + [_ptr] * 10
                    + [_long] * 3 + [_ptr, _int] + [_ptr] * 7),
    "eagle_catch_up": (_int, [_int] * 9 + [ctypes.c_float, _ptr, _long, _ptr, _ptr, _long, _int] + [_ptr] * 12
                       + [_long] * 3 + [_int] + [_ptr] * 6),
    "decoder_forward": (_int, [_int] * 10 + [_ptr, _long, _long] + [_ptr] * 6 + [_long] * 4 + [_int] * 3
                        + [_ptr, _long, _long] * 2 + [_ptr, ctypes.c_float] + [_ptr] * 3 + [_ptr, _long, _ptr]),
    "draft_chain": (_int, [_int] * 10 + [_ptr] * 4 + [_int, _ptr, _long] + [_ptr] * 6 + [_long] * 4
                    + [_ptr, _int, _ptr, ctypes.c_float] + [_ptr] * 7),
    "draft_catch_up": (_int, [_int] * 11 + [_ptr, _long, _int] + [_ptr] * 8 + [_long] * 4 + [_int, _ptr, ctypes.c_float]
                       + [_ptr] * 7),
    "store_tokens": (_int, [_int] * 3 + [_ptr, _long, _long, _ptr, _ptr, _long, _int]),
    "copy_states": (None, [_int, _ptr, _long, _long, _long, _int]),
    "mtp_chain": (_int, [_int] * 6 + [_ptr] * 4 + [_ptr] * 3 + [_int, _ptr, _long] + [_ptr] * 7),
    "rms_norm_rows": (None, [_int] * 2 + [_ptr] * 2 + [ctypes.c_float, _ptr]),
    "sample_rows": (None, [_int] * 3 + [_ptr, _long, _ptr, _long, _long, _ptr, _ptr]),
    "verify_rows": (None, [_int] * 3 + [_ptr] * 7),
    "verify_step": (None, [_int] * 4 + [_ptr] * 4 + [_int] + [_ptr] * 8),
    "head_sample": (None, [_int] * 3 + [_ptr, _long, _ptr, _ptr, _ptr, _int, _ptr, _long, _ptr, _long, _ptr, _long,
                                       _ptr]),
}

active = False  # kernels loaded and switched on: read by the hot path as a plain attribute


def check_status(status: int, what: str) -> None:
    """Raise for a kernel's non-zero status: -1 no memory for attention scores, -2 a token id outside
    the embedding table (where torch's lookup would raise)."""
    if status == -2:
        raise IndexError(f"{what}: a token id outside the vocabulary")
    if status != 0:
        raise MemoryError(f"{what}: no memory for the attention scores")


def set_enabled(enabled: bool) -> None:
    """Use the kernels (when they load) or torch everywhere: for A/B benchmarks."""
    global _enabled, active
    _enabled = enabled
    active = enabled and library() is not None


def enabled() -> bool:
    """True when the kernels are loaded and switched on (loads them on first call)."""
    return _enabled and library() is not None


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None where they cannot be built or loaded (the reason is logged once)."""
    global _library, _loaded, active
    if _loaded:
        return _library
    with _lock:
        if not _loaded:
            try:
                _library = _open(_compiled())
            except (OSError, subprocess.SubprocessError, RuntimeError, AttributeError) as exc:
                log.info("CPU kernels unavailable, the engine uses torch: %s", exc)
            _loaded = True
            active = _enabled and _library is not None
    return _library


def _open(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def _compiled() -> Path:
    """The shared library, compiled unless the cache holds one for these sources, flags, compiler and CPU."""
    return native_build.compiled("rollspec_kernels", SOURCES, FLAGS, libraries=("-lm",),
                                 key_extra=native_build.cpu_flags())
