"""Frozen configs of the transport cores; launch/ builds them from the validated user config."""

from dataclasses import dataclass, field, fields
from typing import Any

from rollspec.transport.errors import ConfigError

MiB = 1 << 20
GiB = 1 << 30


def _check_positive(obj: Any) -> None:
    for f in fields(obj):
        value = getattr(obj, f.name)
        if type(value) in (int, float) and not value > 0:
            raise ConfigError(f"{type(obj).__name__}.{f.name}", value, "> 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class CodecLimits:
    """Caps applied to every inbound message before anything is allocated for it."""

    max_header_bytes: int = 64 * MiB
    """Frame 0 (msgpack header) size cap."""
    max_frame_bytes: int = GiB
    """Cap on any one payload frame; also the socket's ZMQ_MAXMSGSIZE (libzmq checks it per frame)."""
    max_frames: int = 4096
    max_message_bytes: int = 2 * GiB
    max_ndim: int = 8

    def __post_init__(self) -> None:
        _check_positive(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    """One work queue hosted by the broker."""

    name: str
    capacity: int = 1024
    """Items held by the broker (ready + leased). Producers get credit only for free slots."""
    capacity_bytes: int = 256 * MiB
    """No credit is granted while the items held take this many bytes (the bound is this plus the
    producers' in-flight windows)."""
    lease_s: float = 10.0
    """A consumer silent this long is presumed dead and its leased items go back to the queue."""
    max_hold_s: float = 3600.0
    """Even a live consumer loses an item it has held this long (a hung application thread)."""
    lost_after_s: float = 1.0
    """A delivery the consumer does not report holding after this long was lost in transit."""
    max_attempts: int = 5
    """Deliveries of one item before it is dropped with reason 'max_attempts'."""
    dedup_window: int = 1 << 18
    """Message ids remembered for ingress dedup (at least this many; forgotten one segment at a time);
    must exceed capacity by a wide margin."""
    max_dropped_records: int = 10_000

    def __post_init__(self) -> None:
        _check_positive(self)
        if not self.name:
            raise ConfigError("QueueConfig.name", self.name, "a non-empty name")
        if self.dedup_window < 4 * self.capacity:
            raise ConfigError("QueueConfig.dedup_window", self.dedup_window, f">= 4 * capacity ({4 * self.capacity})")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerConfig:
    """A sender attached to one queue."""

    window: int = 512
    """Un-confirmed new items a producer may have outstanding (its credit window). Credit granted and
    not yet used stays reserved in the queue, so keep producers x window within the queue capacity."""
    window_bytes: int = 64 * MiB
    """put() also waits while un-confirmed items take this many bytes."""
    batch_items: int = 256
    batch_bytes: int = 4 * MiB
    retry_s: float = 1.0
    """Un-confirmed items are sent again (the broker dedups them by id) once the broker has confirmed
    later items for retry_s / 4, or has confirmed nothing for retry_s."""
    heartbeat_s: float = 1.0
    checksum_tensors: bool = False
    """Also CRC tensor frames (headers and item bodies are always checksummed)."""
    tensor_frame_bytes: int = GiB
    """A tensor larger than this travels as several zmq frames of this size, joined into one buffer by
    the receiver (one extra copy there). Smaller frames let libzmq's CURVE encryption on one side
    overlap the decryption on the other: +35-50% for raw zmq on 2 cores, but no gain through our
    channel once the receiver's join is paid, and a loss without CURVE (BENCHMARKS.md, Security)."""
    limits: CodecLimits = field(default_factory=CodecLimits)

    def __post_init__(self) -> None:
        _check_positive(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerConfig:
    """A receiver attached to one queue."""

    window_items: int = 512
    """Items the broker may have leased to this consumer at once (its credit)."""
    window_bytes: int = 64 * MiB
    heartbeat_s: float = 1.0
    """Heartbeats keep this consumer's leases alive; keep it well under the queue's lease_s."""
    ack_delay_s: float = 0.05
    """Acks wait up to this long to go as one message while the broker still has half of this consumer's
    window (items and bytes) to deliver into; past half they go at once. Waiting happens inside get_batch
    and ack; an application that stops calling has them sent with its next heartbeat (heartbeat_s)."""
    keep_freed_heap: bool = True
    """Have glibc keep window_bytes of freed memory instead of returning it to the kernel at once
    (process-wide, see transport/heap.py): received large frames then reuse warm pages."""
    dedup_window: int = 1 << 16
    """Acked message ids remembered (at least this many; forgotten one ack batch at a time) so a redelivered
    item is acked again instead of processed twice."""
    limits: CodecLimits = field(default_factory=CodecLimits)

    def __post_init__(self) -> None:
        _check_positive(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcastConfig:
    """Weight publisher and subscriber."""

    chunk_bytes: int = 4 * MiB
    window_chunks: int = 8
    """Chunk requests a subscriber keeps outstanding."""
    request_timeout_s: float = 0.5
    """A chunk not received this long after its request is requested again."""
    poll_s: float = 0.5
    """Subscribers re-send their version query this often (the publisher answers at once on publish)."""
    max_version_bytes: int = 64 * GiB
    """A subscriber refuses (OVERSIZED) a manifest announcing a larger version before allocating for it."""
    limits: CodecLimits = field(default_factory=CodecLimits)

    def __post_init__(self) -> None:
        _check_positive(self)
        if self.chunk_bytes % 64:
            raise ConfigError("BroadcastConfig.chunk_bytes", self.chunk_bytes, "a multiple of 64")
