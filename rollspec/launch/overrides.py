"""Dotted `key=value` overrides on a nested config mapping; values are typed the way YAML types them.

    apply_overrides({"rollout": {"k": 4}}, ["rollout.k=2", "data.tasks={addition: 1.0}"])

Whether a key exists is checked by the config models (so the error can list the valid keys);
here only the syntax is checked.
"""

import copy
import re
from typing import Any

import yaml

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, except that `1e-4` is a float (PyYAML needs `1.0e-4`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """Parse YAML text (config files and override values alike)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class OverrideError(ValueError):
    """An override that is not `dotted.key=value`, or whose value is not valid YAML."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], YAML-typed value)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.match(key):
        raise OverrideError(f"override {text!r} must look like section.key=value (e.g. rollout.k=2)")
    try:
        parsed = yaml_load(value) if value.strip() else ""
    except yaml.YAMLError as exc:
        raise OverrideError(f"override {text!r}: value {value!r} is not valid YAML ({exc})") from exc
    return key.split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A copy of `raw` with every override set, in order (a later one wins)."""
    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise OverrideError(f"override {text!r}: {'.'.join(path[: i + 1])} is a value, not a section")
            node = child
        node[path[-1]] = value
    return out
