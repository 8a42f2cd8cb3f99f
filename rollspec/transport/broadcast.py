"""The weight-broadcast interface: one WeightSource publishes versions, WeightSinks apply the newest.

Contract: `latest()` only ever returns a complete, checksum-verified version; versions a sink returns
never decrease; a sink that joins late or misses chunks converges to the newest version; the
previous version is released when a newer one is applied. Implementations: ZMQ (weight_publisher.py,
weight_subscriber.py) and in-process (below, for unit tests).
"""

import threading
import time
from abc import ABC, abstractmethod

import torch

from rollspec.transport.errors import VersionError
from rollspec.transport.stats import BroadcastStats


class WeightSource(ABC):
    """Publishes weight versions (learner rank 0, or the draft-refresh actor)."""

    @abstractmethod
    def publish(self, version: int, weights: dict[str, torch.Tensor]) -> None:
        """Snapshot `weights` as `version` (strictly greater than the last; VersionError otherwise) and
        make it the only version served. Returns once the snapshot is taken, not when it is received."""

    @abstractmethod
    def stats(self) -> BroadcastStats:
        """Counters snapshot."""

    @abstractmethod
    def close(self) -> None:
        """Stop serving."""


class WeightSink(ABC):
    """Receives weight versions (rollout actors, the draft-refresh actor)."""

    @abstractmethod
    def latest(self) -> tuple[int, dict[str, torch.Tensor]] | None:
        """(version, weights) of the newest complete verified version, or None before the first."""

    def wait_for(self, min_version: int, timeout_s: float) -> tuple[int, dict[str, torch.Tensor]] | None:
        """Block until a version >= min_version is applied; None on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            current = self.latest()
            if current is not None and current[0] >= min_version:
                return current
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.005)

    @abstractmethod
    def stats(self) -> BroadcastStats:
        """Counters snapshot."""

    @abstractmethod
    def close(self) -> None:
        """Stop receiving."""


class InProcBroadcast(WeightSource):
    """In-process broadcast: publish clones the weights; every sink sees the newest clone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: tuple[int, dict[str, torch.Tensor]] | None = None
        self._stats = BroadcastStats()

    def publish(self, version: int, weights: dict[str, torch.Tensor]) -> None:
        snapshot = {name: tensor.detach().clone() for name, tensor in weights.items()}
        with self._lock:
            if self._current is not None and version <= self._current[0]:
                raise VersionError(f"version {version} is not newer than {self._current[0]}")
            self._current = (version, snapshot)
            self._stats.version = version
            self._stats.versions_published += 1

    def sink(self) -> "InProcSink":
        """A new sink seeing this source's versions."""
        return InProcSink(self)

    def current(self) -> tuple[int, dict[str, torch.Tensor]] | None:
        """The newest (version, weights) published, or None."""
        with self._lock:
            return self._current

    def stats(self) -> BroadcastStats:
        with self._lock:
            return BroadcastStats(**self._stats.as_dict())

    def close(self) -> None:
        pass


class InProcSink(WeightSink):
    """Sink of an InProcBroadcast."""

    def __init__(self, source: InProcBroadcast):
        self._source = source

    def latest(self) -> tuple[int, dict[str, torch.Tensor]] | None:
        return self._source.current()

    def stats(self) -> BroadcastStats:
        current = self._source.current()
        return BroadcastStats(version=current[0] if current else None, versions_applied=int(current is not None))

    def close(self) -> None:
        pass
