"""Compiled (msgspec) decoding of tensor-free schemas: the same checks as fields.py, run in C.

The Python checkers cost ~1-3 us per message, more than raw zmq spends moving a 1 KB message. For a
schema whose every field maps onto a msgspec type with the same caps (bool / int / float / str /
bytes, list / dict of those, Literal of str, Optional), one msgspec call decodes the body
[tag, version, [values]] and enforces types, lengths and ranges; the instance is then built without
re-running the checkers, and the class's own check() still runs. The mapping only ever rejects
more than the Python checkers (e.g. NaN against a bound, int literals given as bools): anything the
fast path refuses goes through the Python path, which decides and words the rejection, so what is
accepted and every rejection reason stay exactly those of fields.py.
"""

import types
from typing import Annotated, Any, Callable, Literal, Union, get_args, get_origin

import msgspec

from rollspec.transport.fields import DEFAULT_MAX_LEN
from rollspec.transport.native import rows_builder

Build = Callable[[tuple[Any, ...]], Any]
_HEAD = msgspec.msgpack.Decoder(tuple[str, int, msgspec.Raw])
"""Splits a body into tag, version and the undecoded values (a zero-copy view)."""


class Unsupported(Exception):
    """A field type msgspec cannot check exactly like fields.py (tensors, multi-type unions)."""


def split_head(body: Any) -> tuple[str, int, msgspec.Raw]:
    """(tag, version, raw values) of a body; raises on anything that is not [str, int, any]."""
    return _HEAD.decode(body)


def values_decoder(cls: type, tag: str, version: int, hints: dict[str, Any], metas: list[dict[str, Any]],
                   names: tuple[str, ...]) -> tuple[msgspec.msgpack.Decoder, Build, Any, Any] | None:
    """A decoder of the values array of `cls`, a builder of instances from its output, a (decoder,
    builder of the list of instances) pair for a list of such arrays (a packed segment's rows, decoded in
    one C call, built in another: native.py) and one for a whole packed body [tag, version, rows] of
    this class (one pass over it where splitting off the head first parses the rows twice), or None
    when some field has no exact msgspec equivalent (the codec then uses the Python checkers)."""
    try:
        fields = tuple(_wire_type(hints[name], meta, outer=True) for name, meta in zip(names, metas))
        decoder = msgspec.msgpack.Decoder(tuple[fields])  # type: ignore[valid-type]
        rows = msgspec.msgpack.Decoder(list[tuple[fields]])  # type: ignore[valid-type]
        body = msgspec.msgpack.Decoder(tuple[Literal[tag], Literal[version], list[tuple[fields]]])  # type: ignore[valid-type]
    except (Unsupported, TypeError, ValueError):
        return None
    build = _builder(cls, names)
    build_rows = rows_builder(cls, names, build)
    return decoder, build, (rows, build_rows), (body, build_rows)


def view_decoder(cls: type, tag: str, version: int, hints: dict[str, Any], metas: list[dict[str, Any]],
                 names: tuple[str, ...]) -> msgspec.msgpack.Decoder | None:
    """A decoder of a whole body [tag, version, [values]] of `cls` into a view: a msgspec struct with
    the class's field names, checked like the class (fields, then its check() run as __post_init__) in
    one C call, with no per-field Python. For protocol headers on the hot path, whose receivers only
    read fields. None when some field has no exact msgspec equivalent."""
    try:
        fields = [(name, _wire_type(hints[name], meta, outer=True)) for name, meta in zip(names, metas)]
        namespace = {"__post_init__": cls.check} if callable(getattr(cls, "check", None)) else {}
        view = msgspec.defstruct(f"{cls.__name__}View", fields, array_like=True, frozen=True, gc=False,
                                 namespace=namespace)
        return msgspec.msgpack.Decoder(tuple[Literal[tag], Literal[version], view])  # type: ignore[valid-type]
    except (Unsupported, TypeError, ValueError):
        return None


def _wire_type(tp: Any, meta: dict[str, Any], outer: bool) -> Any:
    origin = get_origin(tp)
    if tp is bool:
        return bool
    if tp is int or tp is float:
        bounds = {k: meta[k] for k in ("ge", "le") if meta.get(k) is not None}
        if tp is int and any(type(v) is not int for v in bounds.values()):
            raise Unsupported(f"int bound {bounds}")
        return Annotated[tp, msgspec.Meta(**bounds)] if bounds else tp
    if tp is str or tp is bytes:
        return Annotated[tp, msgspec.Meta(max_length=(meta.get("max_len") if outer else None) or DEFAULT_MAX_LEN[tp])]
    if origin is list:
        cap = (meta.get("max_len") if outer else None) or DEFAULT_MAX_LEN[list]
        return Annotated[list[_wire_type(get_args(tp)[0], meta, False)], msgspec.Meta(max_length=cap)]  # type: ignore[misc]
    if origin is dict:
        key_tp, value_tp = get_args(tp)
        cap = (meta.get("max_len") if outer else None) or DEFAULT_MAX_LEN[dict]
        return Annotated[dict[str, _wire_type(value_tp, meta, False)], msgspec.Meta(max_length=cap)]  # type: ignore[misc]
    if origin is Literal:
        values = get_args(tp)
        if not all(type(v) is str for v in values):  # fields.py lets True stand for 1: leave ints to it
            raise Unsupported(f"literal {values}")
        return tp
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) != 1 or len(get_args(tp)) != 2:
            raise Unsupported(f"union {tp}")
        return _wire_type(args[0], meta, outer) | None
    raise Unsupported(f"field type {tp!r}")


def _builder(cls: type, names: tuple[str, ...]) -> Build:
    """Instance from already checked values: object.__new__ and slot stores, then check()."""
    env: dict[str, Any] = {"_new": object.__new__, "_set": object.__setattr__, "_cls": cls}
    lines = ["def build(v):", "    self = _new(_cls)"]
    for i, name in enumerate(names):
        slot = cls.__dict__.get(name)
        if type(slot) is types.MemberDescriptorType:  # a slot's own setter: a third cheaper than object.__setattr__
            env[f"_s{i}"] = slot.__set__
            lines.append(f"    _s{i}(self, v[{i}])")
        else:
            lines.append(f"    _set(self, {name!r}, v[{i}])")
    if callable(getattr(cls, "check", None)):
        lines.append("    self.check()")
    lines.append("    return self")
    exec("\n".join(lines), env)  # noqa: S102 - source built from the class's own field names
    return env["build"]
