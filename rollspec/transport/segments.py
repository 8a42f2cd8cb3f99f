"""Wire form of a queue segment: item bodies back to back in one blob, then the items' tensor frames.

The blob always carries a CRC32 (so corruption in transit is caught before any item is decoded);
tensor frames carry CRCs when the producer enables checksum_tensors, since CRC32 at ~4 GB/s would
otherwise halve large-tensor throughput on a link (loopback, TCP) that already checks its data.
"""

import zlib
from dataclasses import dataclass
from typing import Any, NamedTuple

from rollspec.transport.errors import MessageRejected, RejectReason


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
    blob = b"".join([item.body for item in items])
    frames = [f for item in items for f in item.frames]
    return WirePayload(
        blob=blob,
        blob_crc=zlib.crc32(blob),
        sizes=[len(item.body) for item in items],
        nframes=[len(item.frames) for item in items],
        frames=frames,
        frame_crcs=[zlib.crc32(f) for f in frames] if checksum_tensors else [],
        first_frame=_offsets([len(item.frames) for item in items]),
    )


def receive(blob: Any, frames: list[Any], *, blob_crc: int, sizes: list[int], nframes: list[int], live: list[int],
            frame_crcs: list[int]) -> WirePayload:
    """Check a received payload whose frames belong to the items at `live`; MessageRejected if the
    blob or a checksummed frame is damaged or the frame count does not match."""
    blob_view = memoryview(blob)
    if blob_view.nbytes != sum(sizes):
        raise MessageRejected(RejectReason.MALFORMED, f"blob of {blob_view.nbytes} bytes, sizes sum to {sum(sizes)}")
    if zlib.crc32(blob_view) != blob_crc:
        raise MessageRejected(RejectReason.CHECKSUM, f"segment body CRC mismatch ({blob_view.nbytes} bytes)")
    expected = sum(nframes[i] for i in live)
    if len(frames) != expected or (frame_crcs and len(frame_crcs) != expected):
        raise MessageRejected(RejectReason.MALFORMED,
                              f"{len(frames)} frames / {len(frame_crcs)} CRCs for items needing {expected}")
    for n, (frame, crc) in enumerate(zip(frames, frame_crcs)):
        if zlib.crc32(frame) != crc:
            raise MessageRejected(RejectReason.CHECKSUM, f"tensor frame {n} CRC mismatch")
    first_frame, total = [0] * len(sizes), 0
    for i in live:
        first_frame[i] = total
        total += nframes[i]
    return WirePayload(blob=blob, blob_crc=blob_crc, sizes=sizes, nframes=nframes, frames=frames,
                       frame_crcs=frame_crcs, first_frame=first_frame)


def item_sizes(payload: WirePayload) -> list[int]:
    """Bytes per item (body plus tensor frames), for byte-based windows."""
    out = list(payload.sizes)
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
