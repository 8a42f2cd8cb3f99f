"""What a LeaseQueue keeps per segment, consumer and parcel (lease), and the record of an item given up on."""

from dataclasses import dataclass, field
from typing import Any, Hashable


@dataclass(slots=True, eq=False)
class Segment:
    """Items of one producer batch. `payload` is opaque here (wire bodies + frames, or objects)."""

    seg_id: int
    ids: list[str]
    sizes: list[int]
    payload: Any
    state: list[Any]
    attempts: list[int]
    open: int
    parcel_seqs: list[int] = field(default_factory=list)
    run: tuple[str, int] | None = None
    """(prefix, first) if `ids` are prefix + '%x' % k, k = first, first + 1, ...: a Deliver carries them as that."""


@dataclass(slots=True, eq=False)
class ConsumerState:
    """A consumer as the queue sees it: its window, what it holds and when it was last heard from."""

    key: Hashable
    window_items: int
    window_bytes: int
    last_seen: float
    items_out: int = 0
    bytes_out: int = 0
    parcels: dict[int, "Parcel"] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class Parcel:
    """Items `indices` of `segment` leased to `consumer` by one delivery."""

    seq: int
    segment: Segment
    indices: list[int]
    attempts: list[int]
    consumer: ConsumerState
    delivered_at: float
    open: int
    nbytes: int


def joined_run(segments: list[Segment]) -> tuple[str, int] | None:
    """The run of segments' ids back to back, if they are one (each a run, same prefix, counters consecutive)."""
    first = segments[0].run
    if first is None:
        return None
    expected = first[1]
    for segment in segments:
        if segment.run is None or segment.run[0] != first[0] or segment.run[1] != expected:
            return None
        expected += len(segment.ids)
    return first


@dataclass(frozen=True, slots=True)
class DroppedItem:
    """An item the queue gave up on, with the reason (invariant 2: trained once or dropped with a reason)."""

    msg_id: str
    reason: str
