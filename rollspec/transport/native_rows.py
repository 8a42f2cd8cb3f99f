"""Schema instances from checked rows in C (native/rows.c, a CPython extension), with Python as fallback.

A packed segment's rows are decoded and checked by msgspec in one C call (wire_types.py); building one
instance per row in Python (object.__new__, a slot store per field, check()) then cost more per 1 KB
item than the decoding. The extension does the same stores from C. It is compiled with the system C
compiler on first use (rollspec/native_build.py); without a compiler, or with
ROLLSPEC_TRANSPORT_NATIVE=0, `rows_builder` returns the Python loop, with identical results.
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
SOURCES = (Path(__file__).with_name("native") / "rows.c",)
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
                path = native_build.compiled(MODULE, SOURCES, FLAGS)
                loader = importlib.machinery.ExtensionFileLoader(MODULE, str(path))
                spec = importlib.util.spec_from_file_location(MODULE, path, loader=loader)
                assert spec is not None
                _module = importlib.util.module_from_spec(spec)
                loader.exec_module(_module)
            except (OSError, ImportError, subprocess.SubprocessError, RuntimeError) as exc:
                log.info("transport C extension unavailable, rows are built in Python: %s", exc)
                _module = None
            _loaded = True
    return _module


def rows_builder(cls: type, names: tuple[str, ...], build: Callable[[tuple[Any, ...]], Any]) -> RowsBuild:
    """rows -> [instance, ...] for `cls`: the C builder when enabled and `cls` suits it (plain slots,
    object.__new__), else a loop of `build`, the Python builder of one row (wire_types._builder), which
    it must equal: same instances, same check() calls in the same order, same exceptions."""
    native = module() if os.environ.get("ROLLSPEC_TRANSPORT_NATIVE", "1") != "0" else None
    if native is not None:
        try:
            return native.RowBuilder(cls, names, callable(getattr(cls, "check", None))).many
        except TypeError as exc:
            log.info("rows of %s are built in Python: %s", cls.__qualname__, exc)
    return lambda rows: list(map(build, rows))
