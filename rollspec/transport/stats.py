"""Counters the endpoints expose as plain dataclasses; actors turn them into metrics.

Also the rejection log: every rejected message is counted by reason and logged, but only at counts
1, 2, 4, 8, ... per reason, so a flood of bad input cannot flood the log.
"""

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from rollspec.transport.errors import MessageRejected


@dataclass(slots=True)
class RejectCounter:
    """Counts rejected inbound messages per reason and logs them with exponential backoff."""

    where: str
    counts: dict[str, int] = field(default_factory=dict)

    def record(self, exc: MessageRejected, logger: logging.Logger) -> None:
        """Count `exc` under its reason; log it if this count is a power of two."""
        n = self.counts.get(exc.reason.value, 0) + 1
        self.counts[exc.reason.value] = n
        if n & (n - 1) == 0:
            logger.error("%s: rejected message #%d (%s): %s", self.where, n, exc.reason.value, exc.detail)


@dataclass(slots=True)
class QueueStats:
    """Snapshot of one broker-hosted queue. depth = items waiting, in_flight = items leased; dropped
    counts items given up on by reason; rejected counts malformed inbound messages (broker-wide)."""

    name: str
    capacity: int
    depth: int = 0
    in_flight: int = 0
    bytes_held: int = 0
    consumers: int = 0
    producers: int = 0
    enqueued: int = 0
    duplicates_dropped: int = 0
    delivered: int = 0
    redelivered: int = 0
    acked: int = 0
    duplicate_acks: int = 0
    lost_in_transit: int = 0
    lease_expired: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    """Peers refused at the CURVE handshake, by kind (see peer_guard.py); they never sent a message."""

    def as_dict(self) -> dict[str, Any]:
        """All counters as a plain dict (for metrics)."""
        return asdict(self)


@dataclass(slots=True)
class ProducerStats:
    """Snapshot of one producer endpoint."""

    put: int = 0
    confirmed: int = 0
    resent: int = 0
    unconfirmed: int = 0
    credit_waits: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """All counters as a plain dict (for metrics)."""
        return asdict(self)


@dataclass(slots=True)
class ConsumerStats:
    """Snapshot of one consumer endpoint. delivered counts items handed to the application (each id
    once); duplicates_dropped counts deliveries suppressed by id dedup."""

    received: int = 0
    delivered: int = 0
    redelivered: int = 0
    duplicates_dropped: int = 0
    acked: int = 0
    held: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """All counters as a plain dict (for metrics)."""
        return asdict(self)


@dataclass(slots=True)
class BroadcastStats:
    """Snapshot of a weight publisher or subscriber."""

    version: int | None = None
    versions_published: int = 0
    versions_applied: int = 0
    versions_abandoned: int = 0
    chunks_sent: int = 0
    chunks_received: int = 0
    chunks_requested_again: int = 0
    corrupt_chunks: int = 0
    versions_rejected: int = 0
    """Versions refused as unauthenticated: a bad or missing MAC, another run's, or a chunk that fails
    its signed digest while matching its CRC (tampering, not line noise)."""
    subscriber_versions: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """All counters as a plain dict (for metrics)."""
        return asdict(self)
