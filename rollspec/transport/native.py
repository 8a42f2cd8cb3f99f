"""The transport's per-item hot loops in C (native/*.c, one CPython extension), with Python as fallback.

A 1 KB item costs a few microseconds of CPython work spread over many small steps; the steps here are
those where the interpreter, not hashing or copying, was most of the cost: building a packed segment's
rows into schema instances (rows.c; ~0.4 us per item as Python, more than decoding them) and making
put_many's message ids (ids.c; ~0.17 us per id). The extension is compiled with the system C compiler
on first use (rollspec/native_build.py). Without a compiler, or with ROLLSPEC_TRANSPORT_NATIVE=0, the
accessors below return the Python versions, whose results are identical.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import os
import subprocess
import sysconfig
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from rollspec import native_build

log = logging.getLogger(__name__)

MODULE = "rollspec_transport_native"
_DIR = Path(__file__).with_name("native")
SOURCES = tuple(_DIR / name for name in ("module.c", "rows.c", "ids.c"))
HEADERS = (_DIR / "native.h",)
FLAGS = ("-O2", "-std=c11", "-shared", "-fPIC", "-fno-strict-aliasing", f"-I{sysconfig.get_paths()['include']}")

RowsBuild = Callable[[list[tuple[Any, ...]]], list[Any]]

_lock = threading.Lock()
_module: ModuleType | None = None
_loaded = False


def enabled() -> bool:
    """Whether the extension is switched on (ROLLSPEC_TRANSPORT_NATIVE, default 1) and loads."""
    return os.environ.get("ROLLSPEC_TRANSPORT_NATIVE", "1") != "0" and module() is not None


def module() -> ModuleType | None:
    """The loaded extension, or None where it cannot be built or loaded (the reason is logged once)."""
    global _module, _loaded
    if _loaded:
        return _module
    with _lock:
        if not _loaded:
            try:
                path = native_build.compiled(MODULE, SOURCES, FLAGS,
                                             key_extra=b"\0".join(header.read_bytes() for header in HEADERS))
                loader = importlib.machinery.ExtensionFileLoader(MODULE, str(path))
                spec = importlib.util.spec_from_file_location(MODULE, path, loader=loader)
                assert spec is not None
                _module = importlib.util.module_from_spec(spec)
                loader.exec_module(_module)
            except (OSError, ImportError, subprocess.SubprocessError, RuntimeError) as exc:
                log.info("transport C extension unavailable, its loops run in Python: %s", exc)
                _module = None
            _loaded = True
    return _module


def rows_builder(cls: type, names: tuple[str, ...], build: Callable[[tuple[Any, ...]], Any]) -> RowsBuild:
    """rows -> [instance, ...] for `cls`: the C builder when enabled and `cls` suits it (plain slots,
    object.__new__), else a loop of `build`, the Python builder of one row (wire_types._builder), which
    it must equal: same instances, same check() calls in the same order, same exceptions. (Only
    gc.is_tracked tells them apart: C-built instances of plain values are left to reference counting.)"""
    if enabled():
        try:
            has_check = callable(getattr(cls, "check", None))
            return _module.RowBuilder(cls, names, has_check).many  # type: ignore[union-attr]
        except TypeError as exc:
            log.info("rows of %s are built in Python: %s", cls.__qualname__, exc)
    return lambda rows: list(map(build, rows))


def hex_ids() -> Callable[[str, int, int], list[str]]:
    """(prefix, first, n) -> [prefix + '%x' % k for k in range(first, first + n)], prefix ASCII without NUL."""
    return _module.hex_ids if enabled() else _hex_ids  # type: ignore[union-attr]


def _hex_ids(prefix: str, first: int, n: int) -> list[str]:
    # One %-format of n ids and one split instead of a str(int) and a concatenation per id.
    ids = ((prefix + "%x\x00") * n % tuple(range(first, first + n))).split("\x00")
    ids.pop()  # the empty string after the last separator
    return ids
