"""ZMQ weight subscriber: fetches the newest version chunk by chunk, verifies every chunk's CRC32,
and exposes a version only when all of it has arrived intact.

With the run's keys it applies only versions whose SignedManifest verifies (weight_auth.py) and whose
every chunk matches its signed SHA-256; anything else is rejected and counted, and the last good
version keeps serving.

A newer manifest arriving mid-fetch abandons the older fetch (its buffer is freed): the goal is
the latest complete version, not every version.
"""

import logging
import threading
import time
from collections import deque

import torch
import zmq

from rollspec.transport import codec
from rollspec.transport.broadcast import WeightSink
from rollspec.transport.checksum import crc32
from rollspec.transport.config import BroadcastConfig
from rollspec.transport.errors import MessageRejected, RejectReason
from rollspec.transport.faults import NO_FAULTS, FaultPlan
from rollspec.transport.io_loop import IoLoop
from rollspec.transport.schemas import ChunkRequest, SignedManifest, WeightChunk, WeightManifest, WeightQuery
from rollspec.transport.security import NO_SECURITY, SecurityConfig
from rollspec.transport.sockets import open_endpoint
from rollspec.transport.stats import BroadcastStats, RejectCounter
from rollspec.transport.weight_auth import chunk_matches, open_signed
from rollspec.transport.weight_layout import chunk_range, unpack_weights

log = logging.getLogger(__name__)
_REMEMBERED_REJECTIONS = 64  # versions refused for a forged chunk, never fetched again


class _Fetch:
    """One version being assembled."""

    def __init__(self, manifest: WeightManifest, digests: list[bytes]):
        self.manifest = manifest
        self.digests = digests  # signed SHA-256 per chunk, or [] for an unsigned version
        self.flat = torch.empty(manifest.total_bytes, dtype=torch.uint8)
        self.view = self.flat.numpy().data
        self.missing = deque(range(len(manifest.chunk_crcs)))
        self.outstanding: dict[int, tuple[float, int]] = {}  # chunk -> (asked at, request number)
        self.remaining = len(manifest.chunk_crcs)
        self.requests = 0
        self.answered = -1  # highest request number a chunk arrived for
        self.last_progress = time.monotonic()


class SubscriberCore:
    """IoHandler of the subscriber; `cond` guards `applied` (read by the application thread)."""

    loop: IoLoop  # set by the endpoint right after the loop is built (the loop needs this handler first)
    service_after_message = True

    def __init__(self, config: BroadcastConfig, security: SecurityConfig):
        self.config = config
        self.key = security.weights_key
        self.run_id = security.run_id
        self.refused_versions: deque[int] = deque(maxlen=_REMEMBERED_REJECTIONS)
        self.cond = threading.Condition()
        self.applied: tuple[int, dict[str, torch.Tensor]] | None = None
        self.fetch: _Fetch | None = None
        self.stats = BroadcastStats()
        self.rejects = RejectCounter("weight-subscriber")
        self._next_query = 0.0

    def on_message(self, frames: list[zmq.Frame]) -> None:
        try:
            msg = codec.decode([f.buffer for f in frames], limits=self.config.limits)
            if type(msg) is SignedManifest:
                self._on_manifest(*open_signed(msg, run_id=self.run_id, key=self.key, limits=self.config.limits))
            elif type(msg) is WeightManifest:
                if self.key is not None:
                    raise MessageRejected(RejectReason.UNAUTHENTICATED,
                                          f"unsigned manifest of version {msg.version}: this run signs its versions")
                self._on_manifest(msg, [])
            elif type(msg) is WeightChunk:
                self._on_chunk(msg)
            else:
                raise MessageRejected(RejectReason.UNEXPECTED, f"{type(msg).__name__} sent to a subscriber")
        except MessageRejected as exc:
            with self.cond:
                self.rejects.record(exc, log)
                if exc.reason in (RejectReason.UNAUTHENTICATED, RejectReason.WRONG_RUN):
                    self.stats.versions_rejected += 1

    def service(self, now: float) -> float:
        if now >= self._next_query:
            self._next_query = now + self.config.poll_s
            have = self.fetch.manifest.version if self.fetch else (self.applied[0] if self.applied else None)
            self.loop.send(codec.encode(WeightQuery(has_version=have is not None, version=have or 0)))
        fetch = self.fetch
        if fetch is None:
            return self._next_query
        # The publisher answers in request order: a chunk asked before one that arrived is lost (after a
        # grace for injected reordering). If nothing arrives for request_timeout_s, ask again for all:
        # a busy publisher that is still sending never triggers duplicate transfers of 4 MB chunks.
        timeout = self.config.request_timeout_s
        stalled = now - fetch.last_progress > timeout
        for index, (asked_at, number) in list(fetch.outstanding.items()):
            if (number < fetch.answered and now - asked_at > timeout / 4) or (stalled and now - asked_at > timeout):
                del fetch.outstanding[index]
                fetch.missing.appendleft(index)
                self.stats.chunks_requested_again += 1
        wanted = []
        while fetch.missing and len(fetch.outstanding) < self.config.window_chunks:
            index = fetch.missing.popleft()
            fetch.outstanding[index] = (now, fetch.requests)
            wanted.append(index)
        if wanted:
            fetch.requests += 1
            self.loop.send(codec.encode(ChunkRequest(version=fetch.manifest.version, indices=wanted)))
        return min(self._next_query, now + timeout / 4)

    def on_stop(self) -> None:
        pass

    def _on_manifest(self, manifest: WeightManifest, digests: list[bytes]) -> None:
        newest = max(self.applied[0] if self.applied else -1, self.fetch.manifest.version if self.fetch else -1)
        if manifest.version <= newest or manifest.version in self.refused_versions:
            return
        if manifest.total_bytes > self.config.max_version_bytes:
            raise MessageRejected(RejectReason.OVERSIZED, f"version {manifest.version} of {manifest.total_bytes} "
                                  f"bytes > max_version_bytes {self.config.max_version_bytes}")
        if self.fetch is not None:
            self.stats.versions_abandoned += 1
        self.fetch = _Fetch(manifest, digests)
        if not self.fetch.remaining:
            self._complete()

    def _on_chunk(self, chunk: WeightChunk) -> None:
        data = chunk.data.numpy().data
        fetch = self.fetch
        digests = fetch.digests if fetch is not None and chunk.version == fetch.manifest.version else []
        if chunk.index < len(digests):
            if not chunk_matches(data, digests[chunk.index]):  # the signed digest replaces the CRC check
                self._on_digest_mismatch(chunk, crc32(data))
                return
        elif crc32(data) != chunk.crc:  # checked first: damage is counted even on stale chunks
            self.stats.corrupt_chunks += 1
            self._ask_again(chunk.index, chunk.version)
            return
        if fetch is None or chunk.version != fetch.manifest.version or chunk.index >= len(fetch.manifest.chunk_crcs):
            return
        asked = fetch.outstanding.get(chunk.index)
        if asked is None:
            return  # a duplicate, or already re-requested after a timeout and received
        fetch.last_progress = time.monotonic()
        fetch.answered = max(fetch.answered, asked[1])
        start, stop = chunk_range(fetch.manifest, chunk.index)
        if data.nbytes != stop - start or chunk.crc != fetch.manifest.chunk_crcs[chunk.index]:
            self.stats.corrupt_chunks += 1
            self._ask_again(chunk.index, chunk.version)
            return
        fetch.view[start:stop] = data
        del fetch.outstanding[chunk.index]
        fetch.remaining -= 1
        self.stats.chunks_received += 1
        self.loop.wake()  # keep the request window full
        if fetch.remaining == 0:
            self._complete()

    def _on_digest_mismatch(self, chunk: WeightChunk, crc: int) -> None:
        """Line noise that spares a CRC32 is vanishingly rare; forging one is trivial. So a chunk that
        matches the signed CRC but not the signed digest was made to look right: refuse the version.
        Any other mismatch is damage in transit and the chunk is asked for again."""
        fetch = self.fetch
        assert fetch is not None
        if crc == chunk.crc == fetch.manifest.chunk_crcs[chunk.index]:
            version = fetch.manifest.version
            self.fetch = None
            self.refused_versions.append(version)
            with self.cond:
                self.stats.versions_rejected += 1
                self.rejects.record(MessageRejected(RejectReason.UNAUTHENTICATED, f"chunk {chunk.index} of version "
                                                    f"{version} matches its CRC but not its signed digest"), log)
            return
        self.stats.corrupt_chunks += 1
        self._ask_again(chunk.index, chunk.version)

    def _ask_again(self, index: int, version: int) -> None:
        fetch = self.fetch
        if fetch is not None and version == fetch.manifest.version and index in fetch.outstanding:
            del fetch.outstanding[index]
            fetch.missing.appendleft(index)  # asked for again on the next service pass
            self.loop.wake()

    def _complete(self) -> None:
        fetch, self.fetch = self.fetch, None
        assert fetch is not None
        weights = unpack_weights(fetch.manifest, fetch.flat)
        with self.cond:
            self.applied = (fetch.manifest.version, weights)  # the previous version's buffer is released
            self.stats.version = fetch.manifest.version
            self.stats.versions_applied += 1
            self.cond.notify_all()
        self._next_query = 0.0  # tell the publisher at once (it tracks subscriber versions)


class WeightSubscriber(WeightSink):
    """Receives weight versions from a WeightPublisher at `address` (see module docstring)."""

    def __init__(self, address: str, *, config: BroadcastConfig = BroadcastConfig(), faults: FaultPlan = NO_FAULTS,
                 security: SecurityConfig = NO_SECURITY):
        self._core = SubscriberCore(config, security)
        endpoint = open_endpoint(zmq.DEALER, limits=config.limits, security=security, name="weight-subscriber",
                                 connect_address=address)
        self._loop = IoLoop("weight-subscriber", endpoint.context, endpoint.socket, self._core, faults,
                            routing_frames=0, guard=endpoint.guard)
        self._core.loop = self._loop
        self._loop.start()

    def latest(self) -> tuple[int, dict[str, torch.Tensor]] | None:
        """The newest complete, CRC-verified version (see WeightSink.latest)."""
        with self._core.cond:
            return self._core.applied

    def wait_for(self, min_version: int, timeout_s: float) -> tuple[int, dict[str, torch.Tensor]] | None:
        """Block until a version >= min_version is applied; None on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._core.cond:
            while self._core.applied is None or self._core.applied[0] < min_version:
                self._loop.check()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._core.cond.wait(min(remaining, 0.1))
            return self._core.applied

    def stats(self) -> BroadcastStats:
        """Counters snapshot (chunks received, re-requested, corrupt)."""
        with self._core.cond:
            snapshot = BroadcastStats(**self._core.stats.as_dict())
            snapshot.rejected = dict(self._core.rejects.counts)
        snapshot.refused = self._loop.refused()
        snapshot.faults = self._loop.injector.counts.as_dict()
        return snapshot

    def close(self) -> None:
        """Stop receiving; the applied version stays readable."""
        self._loop.stop()
