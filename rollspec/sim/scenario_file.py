"""Scenario files (YAML): every value is written `{value: ..., why: "..."}`, so no assumption goes unexplained.

    name: paper-8b-sync
    description: ...
    cost_kind: roofline            # or "measured"
    hardware: {gpu_name: {value: H100-SXM, why: "..."}, ...}     # roofline only
    target:   {...ModelSpec fields...}                            # roofline only
    draft:    {...ModelSpec fields...}                            # roofline only
    measured: {file: ..., num_replicas: ..., kv_capacity_tokens: ...}   # measured only (file relative to the YAML)
    workload / speculation / training / simulation: {...}

Every field of every section must be present (a default would be an unwritten assumption),
and unknown fields are errors; both name the offending key.
"""

import dataclasses
import re
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml

from rollspec.sim.hardware import ModelSpec
from rollspec.sim.scenario import (
    HardwareSection,
    MeasuredSection,
    Scenario,
    ScenarioError,
    SimulationSection,
    SpeculationSection,
    TrainingSection,
    WorkloadSection,
)

SCENARIO_DIR = Path(__file__).parent / "scenarios"
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_COMMON = {"workload": WorkloadSection, "speculation": SpeculationSection, "training": TrainingSection,
           "simulation": SimulationSection}


SECTIONS = {
    "roofline": {"hardware": HardwareSection, "target": ModelSpec, "draft": ModelSpec, **_COMMON},
    "measured": {"measured": MeasuredSection, **_COMMON},
}


def scenario_names() -> list[str]:
    """Names of the scenarios shipped with rollspec (usable as `rollspec sim NAME`)."""
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.yaml"))


def scenario_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    path = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise ScenarioError(f"unknown scenario {str(name_or_path)!r}; shipped: {scenario_names()} "
                            f"(or pass a path to a .yaml file)")
    return path


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load and validate a scenario by shipped name or by path."""
    path = scenario_path(name_or_path)
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top level, got {type(doc).__name__}")
    kind = doc.get("cost_kind")
    if kind not in SECTIONS:
        raise ScenarioError(f"{path}: cost_kind must be one of {sorted(SECTIONS)}, got {kind!r}")
    expected = {"name", "description", "cost_kind", *SECTIONS[kind]}
    if set(doc) != expected:
        raise ScenarioError(f"{path}: sections {sorted(set(doc))} do not match {sorted(expected)} "
                            f"(missing {sorted(expected - set(doc))}, unknown {sorted(set(doc) - expected)})")
    why: dict[str, str] = {}
    sections = {name: _section(path, name, doc[name], cls, why) for name, cls in SECTIONS[kind].items()}
    measured = sections.get("measured")
    return Scenario(name=str(doc["name"]), description=str(doc["description"]).strip(), cost_kind=kind,
                    measured_file=path.parent / measured.file if measured else None, why=why, **sections)


def _section(path: Path, name: str, raw: Any, cls: type, why: dict[str, str]) -> Any:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: section {name!r} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    missing, unknown = sorted(set(fields) - set(raw)), sorted(set(raw) - set(fields))
    if missing or unknown:
        raise ScenarioError(f"{path}: section {name!r} is missing {missing} and has unknown {unknown}")
    values = {}
    for key, entry in raw.items():
        where = f"{name}.{key}"
        if not (isinstance(entry, dict) and set(entry) == {"value", "why"} and str(entry["why"]).strip()):
            raise ScenarioError(f"{path}: {where} must be {{value: ..., why: '<non-empty reason>'}}, got {entry!r}")
        values[key] = _coerce(path, where, entry["value"], fields[key].type)
        why[where] = str(entry["why"]).strip()
    return cls(**values)


def _coerce(path: Path, where: str, value: Any, kind: Any) -> Any:
    # PyYAML reads 3.35e12 (no dot, no exponent sign) as a string, so numbers are converted by field type.
    if get_origin(kind) is list:
        item = get_args(kind)[0]
        if not isinstance(value, list):
            raise ScenarioError(f"{path}: {where} must be a list, got {value!r}")
        return [_coerce(path, where, v, item) for v in value]
    if kind is bool:
        if not isinstance(value, bool):
            raise ScenarioError(f"{path}: {where} must be true or false, got {value!r}")
        return value
    if kind in (int, float):
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        number = float(value) if is_number or isinstance(value, str) and _NUMBER.fullmatch(value) else None
        if number is None or (kind is int and not number.is_integer()):
            raise ScenarioError(f"{path}: {where} must be {kind.__name__}, got {value!r}")
        return kind(number)
    return str(value)
