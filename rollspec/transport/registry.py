"""Schema registry: (type tag, schema version) -> frozen message class, and the decorator that fills it.

A schema is a plain annotated class; `register_schema` turns it into a frozen, slotted, keyword-only
dataclass whose construction validates every field (see fields.py) and then calls the class's own
optional `check(self)` for cross-field rules. Decoding constructs through the same path, so nothing
reaches an actor without passing validation.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, cast, dataclass_transform, get_args, get_type_hints

import torch

from rollspec.transport.errors import MessageRejected, RejectReason, SchemaError
from rollspec.transport.fields import Checker, compile_checker, limit


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """Wire identity and compiled validators of one schema class."""

    tag: str
    version: int
    names: tuple[str, ...]
    from_values: Callable[[list[Any]], Any]
    """Builds a validated instance from field values in declaration order (the decode path)."""
    values_of: Callable[[Any], list[Any]]
    """Field values in declaration order (the encode path)."""
    may_hold_tensors: bool
    """Some field's type mentions torch.Tensor, so encoding must collect tensor frames."""


class SchemaRegistry:
    """Maps (tag, version) to schema classes. Registration happens at import time; lookups are read-only
    afterwards, so one registry is shared by all threads of a process."""

    def __init__(self) -> None:
        self._classes: dict[tuple[str, int], type] = {}
        self.find = self._classes.get
        """find((tag, version)) -> class or None: the decode fast path (lookup() explains misses)."""

    def add(self, cls: type) -> None:
        """Register `cls`; a second class under the same (tag, version) is a programming error."""
        info: SchemaInfo = getattr(cls, "__schema__")
        key = (info.tag, info.version)
        if key in self._classes and self._classes[key].__qualname__ != cls.__qualname__:
            raise ValueError(f"schema {key} already registered by {self._classes[key].__qualname__}")
        self._classes[key] = cls

    def lookup(self, tag: object, version: object) -> type:
        """The class for (tag, version), or MessageRejected(UNKNOWN_TYPE / WRONG_VERSION)."""
        cls = self._classes.get((tag, version))  # type: ignore[arg-type]
        if cls is not None:
            return cls
        known = sorted(v for t, v in self._classes if t == tag)
        if known:
            raise MessageRejected(RejectReason.WRONG_VERSION, f"type {tag!r} version {version!r}, known {known}")
        raise MessageRejected(RejectReason.UNKNOWN_TYPE, f"type {tag!r} is not registered")

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self._classes


DEFAULT_REGISTRY = SchemaRegistry()


def _mentions_tensor(tp: Any) -> bool:
    return tp is torch.Tensor or any(_mentions_tensor(arg) for arg in get_args(tp))


def _compile_validators(cls: type, names: tuple[str, ...], checkers: list[Checker]) -> tuple[Callable[..., Any], ...]:
    """Generate __post_init__, from_values and values_of for `cls`, unrolled over its fields.

    Generated like dataclasses' own __init__ because a generic loop doubled decode time: this path
    runs once per item on every hop.
    """
    env: dict[str, Any] = {"_new": object.__new__, "_set": object.__setattr__, "_cls": cls}
    post = ["def __post_init__(self):"]
    build = ["def from_values(values):", "    self = _new(_cls)"]
    for i, (name, check) in enumerate(zip(names, checkers)):
        env[f"_c{i}"], env[f"_w{i}"] = check, f"{cls.__name__}.{name}"
        post += [f"    v = self.{name}", f"    c = _c{i}(_w{i}, v)", f"    if c is not v: _set(self, {name!r}, c)"]
        build.append(f"    _set(self, {name!r}, _c{i}(_w{i}, values[{i}]))")
    if callable(getattr(cls, "check", None)):
        post.append("    self.check()")
        build.append("    self.check()")
    post.append("    return None")
    build.append("    return self")
    values = ["def values_of(self):", f"    return [{', '.join(f'self.{name}' for name in names)}]"]
    source = "\n".join(post + build + values)
    exec(source, env)  # noqa: S102 - source built above from the class's own field names
    return env["__post_init__"], env["from_values"], env["values_of"]


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(dataclasses.field, limit))
def register_schema(tag: str, version: int = 1, *,
                    registry: SchemaRegistry = DEFAULT_REGISTRY) -> Callable[[type], Any]:
    """Class decorator: make `cls` a validated frozen dataclass and register it as (tag, version).

    Bump `version` whenever fields change meaning, order or type; receivers reject versions they do
    not know (WRONG_VERSION) instead of misreading them.
    """
    if not tag or type(version) is not int or version < 1:
        raise SchemaError("register_schema", (tag, version), "a non-empty tag and a version >= 1")

    def wrap(cls: type) -> type:
        if "__post_init__" in cls.__dict__:
            raise TypeError(f"{cls.__qualname__}: put cross-field rules in check(self), not __post_init__")
        # dataclass() only calls a __post_init__ that exists when it runs; the real one replaces it below.
        setattr(cls, "__post_init__", lambda self: None)
        new_cls: Any = dataclass(frozen=True, slots=True, kw_only=True)(cls)
        hints = get_type_hints(new_cls)
        fields = dataclasses.fields(new_cls)
        names = tuple(f.name for f in fields)
        checkers = [compile_checker(hints[f.name], dict(f.metadata)) for f in fields]
        post_init, from_values, values_of = _compile_validators(new_cls, names, checkers)
        new_cls.__post_init__ = post_init
        new_cls.__schema__ = SchemaInfo(tag=tag, version=version, names=names, from_values=from_values,
                                        values_of=values_of,
                                        may_hold_tensors=any(_mentions_tensor(hints[n]) for n in names))
        registry.add(new_cls)
        return cast(type, new_cls)

    return wrap


def schema_info(obj_or_cls: object) -> SchemaInfo:
    """The SchemaInfo of a registered class or instance; SchemaError if it is not a schema."""
    info = getattr(obj_or_cls, "__schema__", None)
    if not isinstance(info, SchemaInfo):
        raise SchemaError("message", obj_or_cls, "an instance of a @register_schema class")
    return info
