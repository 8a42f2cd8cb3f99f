"""Wire form of a queue segment (the unit a producer hands over, the broker stores and leases out, and
a consumer receives and acks): one blob, then the items' tensor frames.

The blob is either packed (items of one tensor-free schema: one body [tag, version, [row, ...]],
encoded and decoded in one C call; each item's size is an equal share of the blob) or the items'
bodies back to back (items with tensors, or of mixed schemas), `sizes` long each.

The blob always carries a CRC32 (so corruption in transit is caught before any item is decoded);
tensor frames carry CRCs when the producer enables checksum_tensors, since CRC32 at ~4 GB/s would
otherwise halve large-tensor throughput on a link (loopback, TCP) that already checks its data.
"""

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from rollspec.transport import codec
from rollspec.transport.checksum import crc32
from rollspec.transport.errors import BackPressureTimeout, MessageRejected, RejectReason
from rollspec.transport.protocol import shares

PARTIAL_AFTER_S = 0.05
"""A segment waits this long for credit for all its items before a part of it takes the credit there
is (waiting first keeps a full queue from being refilled one freed slot, and one tiny segment, at a time)."""


class WireItem(NamedTuple):
    """One encoded item waiting to be batched: msgpack body and raw tensor buffers. (A named tuple:
    without tensors it holds no GC-tracked object, which keeps the cyclic collector off the hot path.)"""

    msg_id: str
    body: bytes
    frames: tuple[Any, ...]
    nbytes: int


def wire_items(encoded: list[tuple[bytes, tuple[Any, ...]]], msg_ids: list[str]) -> list[WireItem]:
    """WireItems of encoded (body, frames) pairs; tensor-free items (the common case) skip the frame sum.
    Built with tuple.__new__: a NamedTuple's own constructor is a Python-level call per item."""
    new = tuple.__new__
    return [new(WireItem, (msg_id, body, frames, len(body) + sum([f.nbytes for f in frames]) if frames else len(body)))
            for (body, frames), msg_id in zip(encoded, msg_ids, strict=True)]


@dataclass(slots=True)
class WirePayload:
    """A segment's bytes as held by the broker (zmq frames are kept, not copied)."""

    blob: Any
    blob_crc: int
    sizes: list[int]
    nframes: list[int]
    frames: list[Any]
    frame_crcs: list[int]
    first_frame: list[int]
    packed: bool = False
    local: bool = False
    """Encoded in this process (valid by construction): a packed one may be coalesced with its neighbours
    (coalesce_packed). Never set for a payload received from a peer, whose rows were not checked yet."""

    @property
    def nbytes(self) -> int:
        """Blob plus tensor frames."""
        return len(self.blob) + sum([memoryview(f).nbytes for f in self.frames]) if self.frames else len(self.blob)

    def frames_for(self, indices: list[int]) -> tuple[list[Any], list[int]]:
        """Frames (and their CRCs, if any) of the items at `indices`, in order."""
        if not self.frames:
            return [], []
        frames: list[Any] = []
        crcs: list[int] = []
        for i in indices:
            start, stop = self.first_frame[i], self.first_frame[i] + self.nframes[i]
            frames.extend(self.frames[start:stop])
            if self.frame_crcs:
                crcs.extend(self.frame_crcs[start:stop])
        return frames, crcs


def pack(items: list[WireItem], checksum_tensors: bool) -> WirePayload:
    """Batch encoded items into one payload."""
    if len(items) == 1:  # a large tensor's segment: one item, built without a pass per field
        body, frames = items[0].body, list(items[0].frames)
        return WirePayload(blob=body, blob_crc=crc32(body), sizes=[len(body)], nframes=[len(frames)],
                           frames=frames, frame_crcs=[crc32(f) for f in frames] if checksum_tensors else [],
                           first_frame=[0])
    blob = b"".join([item.body for item in items])
    frames = [f for item in items for f in item.frames]
    return WirePayload(
        blob=blob,
        blob_crc=crc32(blob),
        sizes=[len(item.body) for item in items],
        nframes=[len(item.frames) for item in items],
        frames=frames,
        frame_crcs=[crc32(f) for f in frames] if checksum_tensors else [],
        first_frame=_offsets([len(item.frames) for item in items]),
    )


def encode(items: Sequence[Any], msg_ids: Sequence[str], checksum_tensors: bool, frame_bytes: int = 0) -> WirePayload:
    """A segment of `items` (schema instances): packed when they share one tensor-free schema; tensors
    above frame_bytes (if > 0) split into frames of that size (codec.encode_body)."""
    body = codec.encode_rows(items)
    if body is not None:
        return packed(body, len(items))
    return pack(wire_items([codec.encode_body(item, frame_bytes) for item in items], list(msg_ids)), checksum_tensors)


class OutSegment(NamedTuple):
    """An encoded segment waiting for credit, with its items kept in case it must be cut smaller."""

    ids: list[str]
    wire: WirePayload
    items: Sequence[Any]


def encode_chunks(items: Sequence[Any], msg_ids: list[str], max_items: int, max_bytes: int,
                  checksum_tensors: bool, frame_bytes: int = 0) -> list[OutSegment]:
    """`items` as segments of at most max_items and (but for a single item) about max_bytes."""
    if not items:
        return []
    body = codec.encode_rows(items[:max_items])  # None: tensors or mixed schemas, encoded one by one below
    if body is not None:  # tensor-free: packed, cut by count, halved while too big
        out: list[OutSegment] = []
        for k in range(0, len(items), max_items):
            chunk, chunk_ids = items[k:k + max_items], msg_ids[k:k + max_items]
            wire = packed(body, len(chunk)) if k == 0 else encode(chunk, chunk_ids, checksum_tensors)
            _packed_within(OutSegment(chunk_ids, wire, chunk), max_bytes, checksum_tensors, out)
        return out
    wires = wire_items([codec.encode_body(item, frame_bytes) for item in items], msg_ids)
    out, start, nbytes = [], 0, 0
    for end, item in enumerate(wires, 1):
        nbytes += item.nbytes
        if end - start < max_items and nbytes < max_bytes and end < len(wires):
            continue
        out.append(OutSegment(msg_ids[start:end], pack(wires[start:end], checksum_tensors), items[start:end]))
        start, nbytes = end, 0
    return out


def _packed_within(segment: OutSegment, max_bytes: int, checksum_tensors: bool, out: list[OutSegment]) -> None:
    if len(segment.wire.blob) <= max_bytes or len(segment.ids) == 1:
        out.append(segment)
        return
    for half in cut(segment, len(segment.ids) // 2, checksum_tensors):
        _packed_within(half, max_bytes, checksum_tensors, out)


def cut(segment: OutSegment, count: int, checksum_tensors: bool, frame_bytes: int = 0) -> tuple[OutSegment, OutSegment]:
    """The first `count` items of a segment and the rest, re-encoded (credit for only part of it)."""
    head, tail = segment.items[:count], segment.items[count:]
    return (OutSegment(segment.ids[:count], encode(head, segment.ids[:count], checksum_tensors, frame_bytes), head),
            OutSegment(segment.ids[count:], encode(tail, segment.ids[count:], checksum_tensors, frame_bytes), tail))


def send_as_room_allows(pending: deque[OutSegment], *, room: Callable[[], int], send: Callable[[OutSegment], None],
                        wait: Callable[[float], None], on_full: Callable[[], None], checksum_tensors: bool,
                        timeout_s: float, timeout_message: Callable[[int], str], frame_bytes: int = 0) -> None:
    """Send each pending segment once `room()` covers all its items, or, after PARTIAL_AFTER_S without
    that, the part that fits as a smaller segment. While there is no room: `on_full()`, then
    `wait(seconds)` (a condition's wait, the caller holding its lock); BackPressureTimeout with
    `timeout_message(items sent)` after `timeout_s`. Shared by the broker's in-process producer and
    the remote one, which differ only in where a segment goes and what room means."""
    done, now = 0, time.monotonic()
    deadline, partial_at = now + timeout_s, now + PARTIAL_AFTER_S
    while pending:
        segment, free = pending[0], room()
        count = len(segment.ids)
        if free >= count or (free > 0 and time.monotonic() >= partial_at):
            if free < count:
                pending[0], rest = cut(segment, free, checksum_tensors, frame_bytes)
                pending.insert(1, rest)
                segment = pending[0]
            pending.popleft()
            send(segment)
            done += len(segment.ids)
            partial_at = time.monotonic() + PARTIAL_AFTER_S
            continue
        on_full()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BackPressureTimeout(timeout_message(done))
        wait(min(remaining, PARTIAL_AFTER_S))


def packed(body: bytes, count: int) -> WirePayload:
    """Payload of a packed body of `count` rows; per-item sizes are equal shares of it (for byte windows)."""
    return WirePayload(blob=body, blob_crc=crc32(body), sizes=shares(len(body), count), nframes=[0] * count, frames=[],
                       frame_crcs=[], first_frame=[0] * count, packed=True, local=True)


def coalesce_packed(payloads: Iterable[WirePayload], max_items: int, max_bytes: int) -> tuple[WirePayload, int] | None:
    """One packed payload holding the rows of the first k >= 2 of `payloads` (local, packed, of one schema,
    together within max_items and max_bytes), and k; None if fewer than two qualify. Rows are position-free
    msgpack, so the merged body is the shared [tag, version] head, one array header and the rows back to
    back: one copy, no re-encoding. Lets a queue lease several small segments as one parcel. Takes from
    `payloads` only as far as it merges (and one more)."""
    payloads = iter(payloads)
    first = _split_packed(next(payloads, None))
    if first is None:
        return None
    head, rows, count = first
    parts, nbytes = [rows], len(rows)
    for payload in payloads:
        split = _split_packed(payload)
        if split is None or split[0] != head or count + split[2] > max_items or nbytes + len(split[1]) > max_bytes:
            break
        parts.append(split[1])
        count += split[2]
        nbytes += len(split[1])
    if len(parts) < 2:
        return None
    return packed(b"".join([head, b"\xdd", count.to_bytes(4, "big"), *parts]), count), len(parts)


def _split_packed(payload: WirePayload | None) -> tuple[bytes, memoryview, int] | None:
    """(head [tag, version] bytes, rows bytes, row count) of a local packed body; None for anything else."""
    if payload is None or not (payload.packed and payload.local):
        return None
    view = memoryview(payload.blob)
    try:
        pos, kind = 1, view[1]
        if view[0] != 0x93:  # [tag, version, rows]
            return None
        if 0xA0 <= kind <= 0xBF:  # tag: fixstr, str8, str16
            pos += 1 + (kind & 0x1F)
        elif kind in (0xD9, 0xDA):
            width = kind - 0xD8
            pos += 1 + width + int.from_bytes(view[pos + 1:pos + 1 + width], "big")
        else:
            return None
        kind = view[pos]  # version: positive fixint, uint8 / 16 / 32
        pos += 1 if kind < 0x80 else {0xCC: 2, 0xCD: 3, 0xCE: 5}.get(kind, len(view))
        head, kind = bytes(view[:pos]), view[pos]
        if 0x90 <= kind <= 0x9F:  # rows: fixarray, array16, array32
            count, start = kind & 0x0F, pos + 1
        elif kind in (0xDC, 0xDD):
            width = 2 if kind == 0xDC else 4
            count, start = int.from_bytes(view[pos + 1:pos + 1 + width], "big"), pos + 1 + width
        else:
            return None
    except IndexError:
        return None
    return (head, view[start:], count) if count == len(payload.sizes) else None


def receive(blob: Any, frames: list[Any], *, blob_crc: int, sizes: list[int], nframes: list[int], live: list[int],
            frame_crcs: list[int], packed: bool = False) -> WirePayload:
    """Check a received payload whose frames belong to the items at `live`; MessageRejected if the
    blob or a checksummed frame is damaged or the frame count does not match."""
    blob_view = memoryview(blob)
    if blob_view.nbytes != sum(sizes):
        raise MessageRejected(RejectReason.MALFORMED, f"blob of {blob_view.nbytes} bytes, sizes sum to {sum(sizes)}")
    if crc32(blob_view) != blob_crc:
        raise MessageRejected(RejectReason.CHECKSUM, f"segment body CRC mismatch ({blob_view.nbytes} bytes)")
    if packed:  # no frames: nothing more to check or index (a 1 KB item's segment, per delivery)
        if frames or frame_crcs or any(nframes):
            raise MessageRejected(RejectReason.MALFORMED, "a packed segment with tensor frames")
        return WirePayload(blob=blob, blob_crc=blob_crc, sizes=sizes, nframes=nframes, frames=frames,
                           frame_crcs=frame_crcs, first_frame=[0] * len(sizes), packed=True)
    expected = sum(nframes[i] for i in live) if frames or frame_crcs or any(nframes) else 0
    if len(frames) != expected or (frame_crcs and len(frame_crcs) != expected):
        raise MessageRejected(RejectReason.MALFORMED,
                              f"{len(frames)} frames / {len(frame_crcs)} CRCs for items needing {expected}")
    for n, (frame, crc) in enumerate(zip(frames, frame_crcs)):
        if crc32(frame) != crc:
            raise MessageRejected(RejectReason.CHECKSUM, f"tensor frame {n} CRC mismatch")
    first_frame, total = [0] * len(sizes), 0
    if expected:
        for i in live:
            first_frame[i] = total
            total += nframes[i]
    return WirePayload(blob=blob, blob_crc=blob_crc, sizes=sizes, nframes=nframes, frames=frames,
                       frame_crcs=frame_crcs, first_frame=first_frame, packed=packed)


def item_sizes(payload: WirePayload) -> list[int]:
    """Bytes per item (body plus tensor frames), for byte-based windows."""
    out = list(payload.sizes)
    if not payload.frames:
        return out
    for i, count in enumerate(payload.nframes):
        start = payload.first_frame[i]
        for frame in payload.frames[start:start + count]:
            out[i] += memoryview(frame).nbytes
    return out


def _offsets(counts: list[int]) -> list[int]:
    out, total = [], 0
    for count in counts:
        out.append(total)
        total += count
    return out
