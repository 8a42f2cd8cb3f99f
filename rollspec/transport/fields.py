"""Validators compiled from schema annotations: type, length, range and dtype checks.

Each checker is `check(where, value) -> value` and raises SchemaError with the bad value. They run on
every construction, so a message built locally and one decoded from the wire pass the same gate.
"""

import dataclasses
import types
from typing import Any, Callable, Literal, Union, get_args, get_origin

import torch

from rollspec.transport.dtypes import DTYPE_CODES, DTYPE_NAMES
from rollspec.transport.errors import SchemaError

Checker = Callable[[str, Any], Any]

# Used when a field names no max_len: a bound on what one decode may allocate, not a policy.
DEFAULT_MAX_LEN = {str: 1 << 16, bytes: 1 << 30, list: 1 << 24, dict: 1 << 16}
DEFAULT_MAX_NUMEL = 1 << 31


def limit(
    *,
    max_len: int | None = None,
    ge: float | None = None,
    le: float | None = None,
    dtypes: tuple[torch.dtype, ...] | None = None,
    max_numel: int | None = None,
    default: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with caps: max_len bounds the outer str/bytes/list/dict, ge/le bound every
    number inside the field, dtypes/max_numel bound every tensor inside it."""
    caps = dict(max_len=max_len, ge=ge, le=le, dtypes=dtypes, max_numel=max_numel)
    meta = {key: value for key, value in caps.items() if value is not None}
    return dataclasses.field(default=default, metadata=meta)


def compile_checker(tp: Any, meta: dict[str, Any]) -> Checker:
    """Checker for annotation `tp` under the caps in `meta` (see `limit`)."""
    return _compile(tp, meta, outer=True)


def _compile(tp: Any, meta: dict[str, Any], outer: bool) -> Checker:
    origin = get_origin(tp)
    if tp is bool:
        return _exact(bool, "bool")
    if tp is int or tp is float:
        return _number(tp, meta.get("ge"), meta.get("le"))
    if tp is str or tp is bytes:
        return _sized(tp, (meta.get("max_len") if outer else None) or DEFAULT_MAX_LEN[tp])
    if tp is torch.Tensor:
        return _tensor(meta.get("dtypes"), meta.get("max_numel", DEFAULT_MAX_NUMEL))
    if origin is list:
        max_len = (meta.get("max_len") if outer else None) or DEFAULT_MAX_LEN[list]
        return _list(get_args(tp)[0], _compile(get_args(tp)[0], meta, False), max_len, meta)
    if origin is dict:
        key_tp, value_tp = get_args(tp)
        if key_tp is not str:
            raise TypeError(f"schema dict keys must be str, got {key_tp!r}")
        max_len = (meta.get("max_len") if outer else None) or DEFAULT_MAX_LEN[dict]
        return _dict(_compile(value_tp, meta, False), max_len)
    if origin is Literal:
        return _literal(get_args(tp))
    if origin is Union or origin is types.UnionType:
        return _union([(_compile(arg, meta, outer) if arg is not type(None) else None) for arg in get_args(tp)], tp)
    raise TypeError(f"unsupported schema field type {tp!r}: use bool/int/float/str/bytes/Tensor, list, dict, "
                    "Literal or a union of these")


def _exact(cls: type, expected: str) -> Checker:
    def check(where: str, value: Any) -> Any:
        if type(value) is not cls:
            raise SchemaError(where, value, expected)
        return value
    return check


def _number(cls: type, ge: float | None, le: float | None) -> Checker:
    expected = cls.__name__ + (f" >= {ge}" if ge is not None else "") + (f" <= {le}" if le is not None else "")
    is_float = cls is float

    def check(where: str, value: Any) -> Any:
        kind = type(value)
        if kind is not cls and not (is_float and kind is int):
            raise SchemaError(where, value, expected)
        if (ge is not None and value < ge) or (le is not None and value > le):
            raise SchemaError(where, value, expected)
        return float(value) if is_float else value
    return check


def _sized(cls: type, max_len: int) -> Checker:
    expected = f"{cls.__name__} of length <= {max_len}"

    def check(where: str, value: Any) -> Any:
        if type(value) is not cls:
            if cls is bytes and type(value) in (bytearray, memoryview):
                value = bytes(value)
            else:
                raise SchemaError(where, value, expected)
        if len(value) > max_len:
            raise SchemaError(where, f"<{cls.__name__} of length {len(value)}>", expected)
        return value
    return check


def _tensor(dtypes: tuple[torch.dtype, ...] | None, max_numel: int) -> Checker:
    allowed = tuple(dtypes) if dtypes else tuple(DTYPE_CODES)
    expected = f"CPU tensor of dtype in {[DTYPE_NAMES.get(d, str(d)) for d in allowed]}, numel <= {max_numel}"

    def check(where: str, value: Any) -> Any:
        # is_cpu: a bool, where value.device builds a device object (this runs per tensor received)
        if not isinstance(value, torch.Tensor) or not value.is_cpu or value.dtype not in allowed:
            raise SchemaError(where, value if not isinstance(value, torch.Tensor) else
                              f"<tensor {value.dtype} on {value.device}>", expected)
        if value.numel() > max_numel:
            raise SchemaError(where, f"<tensor of {value.numel()} elements>", expected)
        return value
    return check


def _list(elem_tp: Any, elem_check: Checker, max_len: int, meta: dict[str, Any]) -> Checker:
    expected = f"list of length <= {max_len}"
    ge, le = meta.get("ge"), meta.get("le")
    # Token and logprob lists run to 10^5 elements: check them with C-level set(map(type))/min/max and
    # fall back to the per-element checker only to name the bad element.
    fast = {int: frozenset({int}), float: frozenset({float, int}), str: frozenset({str})}.get(elem_tp)
    bounded = elem_tp is not str and (ge is not None or le is not None)

    def check(where: str, value: Any) -> Any:
        if type(value) is not list:
            if type(value) is not tuple:
                raise SchemaError(where, value, expected)
            value = list(value)
        if len(value) > max_len:
            raise SchemaError(where, f"<list of length {len(value)}>", expected)
        if fast is None:
            return [elem_check(f"{where}[{i}]", x) for i, x in enumerate(value)]
        if not fast.issuperset(map(type, value)) or (bounded and value and (
                (ge is not None and min(value) < ge) or (le is not None and max(value) > le))):
            for i, x in enumerate(value):
                elem_check(f"{where}[{i}]", x)
        return value
    return check


def _dict(value_check: Checker, max_len: int) -> Checker:
    expected = f"dict[str, ...] of length <= {max_len}"

    def check(where: str, value: Any) -> Any:
        if type(value) is not dict or len(value) > max_len:
            raise SchemaError(where, value if type(value) is not dict else f"<dict of {len(value)}>", expected)
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise SchemaError(f"{where} key", key, "str")
            out[key] = value_check(f"{where}[{key!r}]", item)
        return out
    return check


def _literal(values: tuple[Any, ...]) -> Checker:
    allowed = frozenset(values)

    def check(where: str, value: Any) -> Any:
        if type(value) not in (str, int, bool) or value not in allowed:
            raise SchemaError(where, value, f"one of {sorted(map(repr, values))}")
        return value
    return check


def _union(options: list[Checker | None], tp: Any) -> Checker:
    allow_none = None in options
    checks = [c for c in options if c is not None]
    expected = str(tp)

    def check(where: str, value: Any) -> Any:
        if value is None:
            if allow_none:
                return None
            raise SchemaError(where, value, expected)
        for option in checks:
            try:
                return option(where, value)
            except SchemaError:
                continue
        raise SchemaError(where, value, expected)
    return check
