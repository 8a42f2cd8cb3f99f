"""Compile-on-first-use of rollspec's C sources with the system compiler, cached by content.

Shared by the engine's ctypes kernels (engine/cpu_kernels.py) and the transport's CPython extension
(transport/native.py). A build lands in ROLLSPEC_KERNEL_CACHE (default ~/.cache/rollspec/kernels)
under a name keyed by the sources, flags, compiler version and any caller-given bytes (e.g. CPU flags
for -march=native), and is renamed into place whole, so concurrent processes never load a partial file
and a changed source never loads a stale one. Stdlib only: engine/ imports it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence


def compiled(stem: str, sources: Sequence[Path], flags: Sequence[str], *, libraries: Sequence[str] = (),
             key_extra: bytes = b"") -> Path:
    """Path of the shared object built from `sources` with `flags` (then `libraries`), compiled now unless
    the cache holds one for the same inputs. RuntimeError without a compiler or on a failed build."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc / gcc) on PATH")
    version = subprocess.run([compiler, "--version"], capture_output=True, timeout=30).stdout
    parts = [source.read_bytes() for source in sources] + [" ".join(flags).encode(), version, key_extra]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    cache = Path(os.environ.get("ROLLSPEC_KERNEL_CACHE") or Path.home() / ".cache" / "rollspec" / "kernels")
    target = cache / f"{stem}-{key}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        built = Path(tmp) / target.name
        result = subprocess.run([compiler, *flags, "-o", str(built), *map(str, sources), *libraries],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"compiling {', '.join(s.name for s in sources)} failed: {result.stderr.strip()[-500:]}")
        os.replace(built, target)
    return target


def cpu_flags() -> bytes:
    """The CPU's feature flags line of /proc/cpuinfo (part of the key of a -march=native build), or b''."""
    try:
        for line in Path("/proc/cpuinfo").read_bytes().splitlines():
            if line.startswith(b"flags"):
                return line
    except OSError:
        pass
    return b""
