"""The package table of DESIGN.md, enforced: forbidden imports and file length."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "rollspec"
NO_DISTRIBUTED = {"ray", "zmq", "deepspeed", "vllm"}
FORBIDDEN = {
    "engine": NO_DISTRIBUTED | {"rollspec.actors", "rollspec.transport", "rollspec.launch", "rollspec.scheduler"},
    "scheduler": None,  # stdlib and numpy only, checked separately
    "rl": NO_DISTRIBUTED | {"rollspec.actors", "rollspec.transport", "rollspec.launch"},
    "sim": NO_DISTRIBUTED | {"rollspec.actors", "rollspec.transport", "rollspec.launch"},
    "transport": {"ray", "deepspeed", "torch.distributed", "rollspec.actors", "rollspec.launch", "rollspec.engine"},
    # Alternative generation backends: may import vllm and engine/, nothing distributed or above them.
    "backends": {"ray", "zmq", "deepspeed", "rollspec.actors", "rollspec.transport", "rollspec.launch"},
}
SCHEDULER_ALLOWED_THIRD_PARTY = {"numpy", "rollspec.scheduler"}
MAX_LINES = 400


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _matches(name: str, prefixes: set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", [p for p, f in FORBIDDEN.items() if f is not None])
def test_package_avoids_forbidden_imports(package):
    bad = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _modules(package)
        for name in _imports(path)
        if _matches(name, FORBIDDEN[package])
    }
    assert not bad, f"forbidden imports in {package}/: {sorted(bad)}"


def test_scheduler_imports_only_stdlib_and_numpy():
    import sys

    bad = set()
    for path in _modules("scheduler"):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or _matches(name, SCHEDULER_ALLOWED_THIRD_PARTY):
                continue
            bad.add(f"{path.relative_to(ROOT)}: {name}")
    assert not bad, f"scheduler/ may import only stdlib and numpy: {sorted(bad)}"


def test_layering_check_catches_a_forbidden_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("import ray\nfrom zmq import Context\n")
    assert _matches("ray", FORBIDDEN["engine"]) and _imports(module) == {"ray", "zmq"}


def test_source_files_stay_under_the_line_limit():
    too_long = {
        str(path.relative_to(ROOT)): n
        for path in ROOT.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not too_long, f"split these modules by concept (limit {MAX_LINES} lines): {too_long}"
