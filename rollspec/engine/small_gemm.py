"""Projections of the generation-time forward through a small-row fp32 GEMM kernel on CPU
(kernels/small_gemm.c), with torch's matmul as the fallback.

Why: MKL's sgemm time grows with the row count at 1-16 rows (see the C file), so a verify of
k + 1 tokens cost ~2 decode steps; the kernel's time stays near one row's until it is compute
bound, and a row's result does not depend on the other rows of the call (bit batch-invariant).

The kernel is compiled on first use with the system C compiler (`-march=native`, ~0.5 s) into
ROLLSPEC_KERNEL_CACHE (default ~/.cache/rollspec/kernels), keyed by source, flags and CPU flags.
Without a compiler or AVX-512F, or with ROLLSPEC_SMALL_GEMM=0, every projection goes through
torch: same results up to float rounding.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels") / "small_gemm.c"
FLAGS = ("-O3", "-march=native", "-std=c11", "-shared", "-fPIC")
PANEL = 32
MULTI_THREAD_MAX_ROWS = 16  # above this, MKL with several threads beats one core

_lock = threading.Lock()
_kernel: ctypes._CFuncPtr | None = None
_loaded = False
_enabled = os.environ.get("ROLLSPEC_SMALL_GEMM", "1") != "0"


def set_enabled(enabled: bool) -> None:
    """Route projections through the kernel (when it loads) or through torch: for A/B benchmarks."""
    global _enabled
    _enabled = enabled


def available() -> bool:
    """True when projections of fp32 CPU tensors go through the kernel."""
    return _enabled and _load() is not None


@dataclasses.dataclass(frozen=True, slots=True)
class ProjWeight:
    """A projection's weight as [in, out] (`t`, what torch reads) and, for fp32 on CPU with the
    kernel loaded, packed into 32-column panels (`packed`)."""

    t: torch.Tensor
    packed: torch.Tensor | None

    def mm(self, x_XK: torch.Tensor) -> torch.Tensor:
        """x @ W."""
        if self.packed is not None and _enabled and _fits(x_XK):
            return _run(x_XK, self, None)
        return torch.mm(x_XK, self.t)

    def addmm(self, c_XN: torch.Tensor, x_XK: torch.Tensor) -> torch.Tensor:
        """c + x @ W, a new tensor (torch.addmm's semantics with alpha = beta = 1)."""
        if self.packed is not None and _enabled and _fits(x_XK) and _fits(c_XN):
            return _run(x_XK, self, c_XN)
        return torch.addmm(c_XN, x_XK, self.t)


def proj_weight(w_KN: torch.Tensor) -> ProjWeight:
    """ProjWeight of an [in, out] weight; packs it when the kernel can run on it."""
    w_KN = w_KN.detach().contiguous()
    packed = None
    if w_KN.device.type == "cpu" and w_KN.dtype == torch.float32 and _load() is not None:
        K, N = w_KN.shape
        panels = -(-N // PANEL)
        padded_KP = torch.zeros(K, panels * PANEL, dtype=w_KN.dtype)
        padded_KP[:, :N] = w_KN
        packed = padded_KP.view(K, panels, PANEL).transpose(0, 1).contiguous()
    return ProjWeight(w_KN, packed)


def _fits(x: torch.Tensor) -> bool:
    # fp32 CPU rows with unit column stride; with several intra-op threads only the small row counts
    return (x.dtype == torch.float32 and x.device.type == "cpu" and x.dim() == 2 and x.stride(1) == 1
            and (x.shape[0] <= MULTI_THREAD_MAX_ROWS or torch.get_num_threads() == 1))


def _run(x_MK: torch.Tensor, w: ProjWeight, c_MN: torch.Tensor | None) -> torch.Tensor:
    M, K = x_MK.shape
    N = w.t.shape[1]
    if K != w.t.shape[0] or (c_MN is not None and tuple(c_MN.shape) != (M, N)):
        raise RuntimeError(f"small_gemm: shapes {tuple(x_MK.shape)} @ {tuple(w.t.shape)}"
                           f"{'' if c_MN is None else f' + {tuple(c_MN.shape)}'} do not match")
    y_MN = torch.empty(M, N, dtype=torch.float32)
    if M:
        _kernel(M, N, K, x_MK.data_ptr(), x_MK.stride(0), w.packed.data_ptr(),  # type: ignore[misc]
                None if c_MN is None else c_MN.data_ptr(), 0 if c_MN is None else c_MN.stride(0),
                y_MN.data_ptr(), N)
    return y_MN


def _load() -> ctypes._CFuncPtr | None:
    global _kernel, _loaded
    if _loaded:
        return _kernel
    with _lock:
        if not _loaded:
            try:
                _kernel = _open(_compiled())
            except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
                log.info("small_gemm kernel unavailable, projections use torch: %s", exc)
            _loaded = True
    return _kernel


def _open(path: Path) -> ctypes._CFuncPtr:
    fn = ctypes.CDLL(str(path)).small_gemm
    fn.argtypes = [ctypes.c_int] * 3 + [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_long, ctypes.c_void_p, ctypes.c_long]
    fn.restype = None
    return fn


def _compiled() -> Path:
    """The kernel's shared library, compiled unless the cache holds one for this source, these
    flags, this compiler and this CPU."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc / gcc) on PATH")
    source = SOURCE.read_bytes()
    version = subprocess.run([compiler, "--version"], capture_output=True, timeout=30).stdout
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), version, _cpu_flags()])).hexdigest()[:16]
    cache = Path(os.environ.get("ROLLSPEC_KERNEL_CACHE") or Path.home() / ".cache" / "rollspec" / "kernels")
    target = cache / f"small_gemm-{key}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:  # concurrent builders each rename a whole file
        built = Path(tmp) / target.name
        result = subprocess.run([compiler, *FLAGS, "-o", str(built), str(SOURCE)], capture_output=True,
                                text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE.name} failed: {result.stderr.strip()[-500:]}")
        os.replace(built, target)
    return target


def _cpu_flags() -> bytes:
    try:
        for line in Path("/proc/cpuinfo").read_bytes().splitlines():
            if line.startswith(b"flags"):
                return line
    except OSError:
        pass
    return b""
