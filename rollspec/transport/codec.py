"""msgpack codec: schema messages <-> frames, tensors as separate zero-copy frames.

A standalone message is [header, *tensor_frames]: header = CRC32 (4 bytes, little endian) of the
msgpack body, then the body [tag, version, [field values in declaration order]]. A tensor inside a
field is msgpack ext type 1 holding (frame index, dtype code, shape); its bytes are frame 1 + index.
A tensor larger than the sender's frame_bytes is ext type 2 holding (first frame index, frame count,
dtype code, shape): its bytes are those frames back to back (joined into one buffer on receipt).
Descriptors are read and checked in tensor_frames.py.
Items inside a queue segment use the same body without the CRC prefix (the segment carries one CRC
for all bodies). Nothing is ever pickled: only registered schema classes come out of decode.

Tensor-free schemas are encoded by one reused msgspec encoder and decoded by compiled msgspec types
(wire_types.py); tensors and anything the compiled path refuses go through msgpack and the Python
checkers, which alone decide what is rejected and why.
"""

import dataclasses
import operator
import struct
from typing import Any, Sequence, get_type_hints

import msgpack
import msgspec
import torch
from msgpack import unpackb

from rollspec.transport.checksum import crc32
from rollspec.transport.config import CodecLimits
from rollspec.transport.dtypes import DTYPE_CODES, tensor_buffer
from rollspec.transport.errors import MessageRejected, RejectReason, SchemaError
from rollspec.transport.registry import DEFAULT_REGISTRY, SchemaRegistry, schema_info
from rollspec.transport.tensor_frames import (
    SPLIT_HEAD,
    SPLIT_TENSOR_EXT,
    TENSOR_EXT,
    TENSOR_HEAD,
    check_sizes,
    dims_layout,
    tensor_from_ext,
)
from rollspec.transport.wire_types import split_head, values_decoder, view_decoder

_CRC = struct.Struct("<I")
DEFAULT_LIMITS = CodecLimits()
_MSGPACK_ERRORS = (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
                   msgpack.OutOfData, UnicodeDecodeError, OverflowError)
_ENCODER = msgspec.msgpack.Encoder()  # stateless between calls: shared by all threads
_COMPILED: dict[type, Any] = {}  # class -> (values decoder, builder, rows decoder), or None: Python path only
_ROW_OF: dict[type, Any] = {}  # tensor-free class -> C-level getter of its field values as a tuple, or None
_ROWS_HEAD = msgspec.msgpack.Decoder(tuple[Any, Any, list[msgspec.Raw]])
_VIEWS: dict[type, Any] = {}  # class -> view decoder (wire_types.view_decoder), or None
_TRUSTED: dict[type, tuple[str, int, tuple[str, ...]]] = {}  # class -> (tag, version, field names)
_LAST_ROWS: dict[SchemaRegistry, Any] = {}  # registry -> (body decoder, builder) of the last packed class decoded


def encode_body(msg: Any, frame_bytes: int = 0) -> tuple[bytes, tuple[memoryview, ...]]:
    """msgpack body of a schema instance and the raw buffers of its tensors (not copied). With
    frame_bytes > 0, a tensor larger than that travels as several frames of frame_bytes (views)."""
    info = schema_info(msg)
    if not info.may_hold_tensors:
        try:
            return _ENCODER.encode([info.tag, info.version, info.values_of(msg)]), ()
        except (TypeError, OverflowError) as exc:
            raise SchemaError(f"{info.tag} field value", str(exc), "bool/int/float/str/bytes/list/dict") from None

    frames: list[memoryview] = []

    def pack_tensor(obj: Any) -> msgpack.ExtType:
        if not isinstance(obj, torch.Tensor):
            raise SchemaError(f"{info.tag} field value", obj, "bool/int/float/str/bytes/list/dict/Tensor")
        buffer = tensor_buffer(obj)
        dims = dims_layout(obj.dim()).pack(*obj.shape)
        if 0 < frame_bytes < buffer.nbytes:
            head = SPLIT_HEAD.pack(len(frames), -(-buffer.nbytes // frame_bytes), DTYPE_CODES[obj.dtype], obj.dim())
            frames.extend(buffer[start:start + frame_bytes] for start in range(0, buffer.nbytes, frame_bytes))
            return msgpack.ExtType(SPLIT_TENSOR_EXT, head + dims)
        head = TENSOR_HEAD.pack(len(frames), DTYPE_CODES[obj.dtype], obj.dim())
        frames.append(buffer)
        return msgpack.ExtType(TENSOR_EXT, head + dims)

    body = msgpack.packb([info.tag, info.version, info.values_of(msg)], default=pack_tensor)
    return body, tuple(frames)


def encode_rows(items: Sequence[Any]) -> bytes | None:
    """One body [tag, version, [row, ...]] (a row = one item's field values) for items of one tensor-free
    schema class, encoded in one C call; None when the items mix classes or may hold tensors (they are
    then encoded one by one). SchemaError for a non-schema item or an unencodable value."""
    kinds = set(map(type, items))
    if len(kinds) != 1:
        for item in items:
            schema_info(item)
        return None
    cls = next(iter(kinds))
    row_of = _ROW_OF[cls] if cls in _ROW_OF else _row_getter(cls)
    if row_of is None:
        return None
    info = schema_info(cls)
    try:
        return _ENCODER.encode([info.tag, info.version, list(map(row_of, items))])
    except (TypeError, OverflowError) as exc:
        raise SchemaError(f"{info.tag} field value", str(exc), "bool/int/float/str/bytes/list/dict") from None


def _row_getter(cls: type) -> Any:
    info = schema_info(cls)
    names = info.names
    getter: Any = None
    if not info.may_hold_tensors:
        if len(names) > 1:
            getter = operator.attrgetter(*names)  # returns a tuple, in C
        else:
            getter = (lambda item: (getattr(item, names[0]),)) if names else (lambda item: ())
    _ROW_OF[cls] = getter
    return getter


def decode_rows(blob: Any, count: int, *, registry: SchemaRegistry = DEFAULT_REGISTRY,
                limits: CodecLimits = DEFAULT_LIMITS) -> list[Any]:
    """The `count` items of a body made by encode_rows: validated instances, or a MessageRejected in
    place of each row that fails (worded exactly as decode_body would word it for that item alone)."""
    if len(blob) <= limits.max_header_bytes:
        last = _LAST_ROWS.get(registry)  # a queue's segments are mostly of one class: try it first, one pass
        if last is not None:
            try:
                rows = last[0].decode(blob)[2]
                if len(rows) == count:
                    return last[1](rows)
            except Exception:  # noqa: BLE001 - another class, or refused: the paths below decide
                pass
        try:
            tag, version, raw = split_head(blob)
            cls = registry.find((tag, version))
            compiled = _COMPILED[cls] if cls in _COMPILED else _compile(cls)
            if compiled is not None:
                rows_decoder, build_rows = compiled[2]
                rows = rows_decoder.decode(raw)
                if len(rows) == count:
                    _LAST_ROWS[registry] = compiled[3]
                    return build_rows(rows)
        except Exception:  # noqa: BLE001 - any refusal: the row-by-row path below decides and words it
            pass
    return _decode_rows_one_by_one(blob, count, registry, limits)


def _decode_rows_one_by_one(blob: Any, count: int, registry: SchemaRegistry, limits: CodecLimits) -> list[Any]:
    if len(blob) > limits.max_header_bytes:
        return [MessageRejected(RejectReason.OVERSIZED, f"segment body of {len(blob)} bytes > "
                                f"{limits.max_header_bytes}")] * count
    try:
        tag, version, rows = _ROWS_HEAD.decode(blob)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return [MessageRejected(RejectReason.MALFORMED, f"segment body is not [tag, version, rows]: {exc}")] * count
    if len(rows) != count:
        return [MessageRejected(RejectReason.MALFORMED, f"segment body has {len(rows)} rows for {count} items")] * count
    out: list[Any] = []
    for row in rows:
        try:
            out.append(decode_body(_ENCODER.encode([tag, version, row]), (), registry=registry, limits=limits))
        except MessageRejected as exc:
            out.append(exc)
    return out


def encode(msg: Any) -> list[bytes | memoryview]:
    """Frames of a standalone message: CRC-prefixed header, then one frame per tensor."""
    body, frames = encode_body(msg)
    return [_CRC.pack(crc32(body)) + body, *frames]


def encode_trusted(cls: type, **fields: Any) -> list[bytes]:
    """Frames of a tensor-free message of schema `cls` from its field values, without building or
    checking an instance: for protocol headers the sender builds from its own validated state on the
    hot path (one per segment). Receivers decode them through the full checks like any message."""
    head = _TRUSTED[cls] if cls in _TRUSTED else _trusted_head(cls)
    body = _ENCODER.encode([head[0], head[1], list(map(fields.__getitem__, head[2]))])
    return [_CRC.pack(crc32(body)) + body]


def _trusted_head(cls: type) -> tuple[str, int, tuple[str, ...]]:
    info = schema_info(cls)
    _TRUSTED[cls] = (info.tag, info.version, info.names)
    return _TRUSTED[cls]


def decode(frames: Sequence[Any], *, registry: SchemaRegistry = DEFAULT_REGISTRY,
           limits: CodecLimits = DEFAULT_LIMITS) -> Any:
    """Validated schema instance from [header, *tensor_frames]; MessageRejected on any problem.

    Tensors returned view the frame buffers (writable zmq frames are not copied).
    """
    if not frames:
        raise MessageRejected(RejectReason.MALFORMED, "empty message")
    header = memoryview(frames[0])
    if header.nbytes > limits.max_header_bytes + _CRC.size:
        raise MessageRejected(RejectReason.OVERSIZED, f"header of {header.nbytes} bytes > {limits.max_header_bytes}")
    if header.nbytes < _CRC.size:
        raise MessageRejected(RejectReason.MALFORMED, f"header of {header.nbytes} bytes has no checksum")
    body = header[_CRC.size:]
    if crc32(body) != _CRC.unpack_from(header)[0]:
        raise MessageRejected(RejectReason.CHECKSUM, f"header CRC mismatch ({body.nbytes} bytes)")
    return decode_body(body, frames[1:], registry=registry, limits=limits)


def decode_view(header: Any, cls: type, limits: CodecLimits = DEFAULT_LIMITS) -> Any:
    """A checked read-only view (same field names, same checks) of the standalone tensor-free message
    in `header` (one frame) if it is a valid `cls`, else None: the caller then decodes it with decode(),
    which returns whatever else it is or words the rejection. One C call where decode() runs the
    header checks, the class lookup and the instance builder in Python: for protocol headers on the
    per-message path (a Deliver at a consumer, an Ack at the broker)."""
    decoder = _VIEWS[cls] if cls in _VIEWS else _view(cls)
    if decoder is None or not _CRC.size <= len(header) <= limits.max_header_bytes + _CRC.size:
        return None
    try:
        view = decoder.decode(header[_CRC.size:])[2]  # first: another type fails at its tag, before the CRC
    except Exception:  # noqa: BLE001 - any refusal (incl. check()) defers to decode()'s verdict
        return None
    return view if crc32(header[_CRC.size:]) == _CRC.unpack_from(header)[0] else None


def _view(cls: type) -> Any:
    decoder = _VIEWS[cls] = _tensor_free_decoder(cls, view_decoder)
    return decoder


def _tensor_free_decoder(cls: type, build: Any) -> Any:
    """`build` (wire_types.view_decoder or values_decoder) applied to the class's schema, or None for a class
    whose fields may hold tensors (those decode through the general path)."""
    info = schema_info(cls)
    if info.may_hold_tensors:
        return None
    fields = {f.name: dict(f.metadata) for f in dataclasses.fields(cls)}
    return build(cls, info.tag, info.version, get_type_hints(cls), [fields[n] for n in info.names], info.names)


def decode_body(body: Any, frames: Sequence[Any], *, registry: SchemaRegistry = DEFAULT_REGISTRY,
                limits: CodecLimits = DEFAULT_LIMITS) -> Any:
    """Validated schema instance from a msgpack body and its tensor frames; MessageRejected on failure."""
    if frames:
        buffers = check_sizes(body, frames, limits)
        used = [False] * len(buffers)

        def ext_hook(code: int, data: bytes) -> torch.Tensor:
            return tensor_from_ext(code, data, buffers, used, limits)
    else:
        if len(body) > limits.max_header_bytes:
            raise MessageRejected(RejectReason.OVERSIZED, f"body of {len(body)} bytes > {limits.max_header_bytes}")
        msg = _decode_compiled(body, registry)
        if msg is not None:
            return msg
        used, ext_hook = None, _no_tensor_frames
    try:
        obj = unpackb(body, ext_hook=ext_hook, raw=False, strict_map_key=True)
    except MessageRejected:
        raise
    except _MSGPACK_ERRORS as exc:
        raise MessageRejected(RejectReason.MALFORMED, f"bad msgpack: {type(exc).__name__}: {exc}") from None
    if type(obj) is not list or len(obj) != 3:
        raise MessageRejected(RejectReason.MALFORMED, f"body is not [tag, version, fields]: {str(obj)[:80]}")
    tag, version, values = obj
    if type(tag) is not str or type(version) is not int or type(values) is not list:
        raise MessageRejected(RejectReason.MALFORMED, f"[{tag!r}, {version!r}, ...] is not [str, int, list]")
    cls = registry.find((tag, version)) or registry.lookup(tag, version)
    info = schema_info(cls)
    if used is not None and not all(used):
        raise MessageRejected(RejectReason.MALFORMED, f"{used.count(False)} tensor frame(s) not referenced")
    if len(values) != len(info.names):
        raise MessageRejected(RejectReason.INVALID_FIELD,
                              f"{tag} v{version}: {len(values)} fields, expected {len(info.names)}")
    try:
        return info.from_values(values)
    except SchemaError as exc:
        raise MessageRejected(RejectReason.INVALID_FIELD, str(exc)) from None


def _decode_compiled(body: Any, registry: SchemaRegistry) -> Any:
    """The message if the compiled path accepts `body` (tensor-free schema, every check passed),
    else None: the caller then decodes it the slow way, which words any rejection."""
    try:
        tag, version, raw = split_head(body)
        cls = registry.find((tag, version))
        compiled = _COMPILED[cls] if cls in _COMPILED else _compile(cls)
        if compiled is None:
            return None
        decoder, build = compiled[0], compiled[1]
        return build(decoder.decode(raw))
    except Exception:  # noqa: BLE001 - any refusal (incl. check()) defers to the Python path's verdict
        return None


def decode_bodies_compiled(bodies: Sequence[Any], *, registry: SchemaRegistry = DEFAULT_REGISTRY,
                           limits: CodecLimits = DEFAULT_LIMITS) -> list[Any]:
    """_decode_compiled over many tensor-free bodies in one loop (a consumer's batch: one schema, so
    the class lookup is done once per run of equal (tag, version)). None marks a body that must go
    through decode_body, which decides and words its rejection."""
    out: list[Any] = []
    append, head, find, cap = out.append, split_head, registry.find, limits.max_header_bytes
    last_key: Any = None
    compiled: Any = None
    for body in bodies:
        try:
            if len(body) > cap:
                append(None)
                continue
            tag, version, raw = head(body)
            if (tag, version) != last_key:
                cls = find((tag, version))
                compiled = _COMPILED[cls] if cls in _COMPILED else _compile(cls)
                last_key = (tag, version)
            append(compiled[1](compiled[0].decode(raw)) if compiled is not None else None)
        except Exception:  # noqa: BLE001 - any refusal defers to decode_body's verdict
            append(None)
    return out


def _compile(cls: type | None) -> Any:
    if cls is None:
        return None
    compiled = _COMPILED[cls] = _tensor_free_decoder(cls, values_decoder)
    return compiled


def _no_tensor_frames(code: int, data: bytes) -> Any:
    raise MessageRejected(RejectReason.MALFORMED, f"ext type {code} in a message without tensor frames")
