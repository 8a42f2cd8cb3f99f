"""ZMQ weight publisher: serves the newest version to any number of subscribers, chunk by chunk.

Subscribers pull: they ask for the newest version (the publisher parks the question and answers the
moment a newer version is published), then request chunks with a bounded window and re-request
any chunk lost or damaged. Pulling gives late joiners and lossy links the same path as everyone
else, and a slow subscriber back-pressures only itself. Chunks are sent zero-copy from the
snapshot; only the newest version is kept, so an older one is freed once its in-flight sends finish.
With the run's keys, each version goes out as a SignedManifest (see weight_auth.py).
"""

import logging
import threading

import torch
import zmq

from rollspec.transport import codec
from rollspec.transport.broadcast import WeightSource
from rollspec.transport.config import BroadcastConfig
from rollspec.transport.errors import MessageRejected, RejectReason, VersionError
from rollspec.transport.faults import NO_FAULTS, FaultPlan
from rollspec.transport.io_loop import IoLoop
from rollspec.transport.schemas import ChunkRequest, SignedManifest, WeightChunk, WeightManifest, WeightQuery
from rollspec.transport.security import NO_SECURITY, SecurityConfig
from rollspec.transport.sockets import DEFAULT_BIND, open_endpoint
from rollspec.transport.stats import BroadcastStats, RejectCounter
from rollspec.transport.weight_auth import chunk_digests, sign_manifest
from rollspec.transport.weight_layout import chunk_range, pack_weights

log = logging.getLogger(__name__)


class _Served:
    """The version being served: manifest (pre-encoded, signed when `signed` is given) and the snapshot."""

    def __init__(self, manifest: WeightManifest, flat: torch.Tensor, signed: SignedManifest | None = None):
        self.manifest = manifest
        self.flat = flat
        self.manifest_frames = codec.encode(signed if signed is not None else manifest)


class PublisherCore:
    """IoHandler of the publisher; `lock` guards `served`, `parked` and `stats`."""

    loop: IoLoop  # set by the endpoint right after the loop is built (the loop needs this handler first)
    service_after_message = True

    def __init__(self, config: BroadcastConfig):
        self.config = config
        self.lock = threading.Lock()
        self.served: _Served | None = None
        self.announce = False
        self.parked: set[bytes] = set()
        self.stats = BroadcastStats()
        self.rejects = RejectCounter("weight-publisher")

    def on_message(self, frames: list[zmq.Frame]) -> None:
        identity = frames[0].bytes
        try:
            msg = codec.decode([f.buffer for f in frames[1:]], limits=self.config.limits)
            with self.lock:
                if type(msg) is WeightQuery:
                    self._on_query(identity, msg)
                elif type(msg) is ChunkRequest:
                    self._on_request(identity, msg)
                else:
                    raise MessageRejected(RejectReason.UNEXPECTED, f"{type(msg).__name__} sent to a publisher")
        except MessageRejected as exc:
            with self.lock:
                self.rejects.record(exc, log)

    def service(self, now: float) -> float:
        with self.lock:
            if self.announce and self.served is not None:
                for identity in self.parked:
                    self.loop.send([identity, *self.served.manifest_frames])
                self.parked.clear()
            self.announce = False
        return now + 3600.0

    def on_stop(self) -> None:
        pass

    def _on_query(self, identity: bytes, msg: WeightQuery) -> None:
        name = identity.hex()[:12]
        if msg.has_version:
            self.stats.subscriber_versions[name] = msg.version
        served = self.served
        if served is not None and (not msg.has_version or msg.version < served.manifest.version):
            self.loop.send([identity, *served.manifest_frames])
        else:
            self.parked.add(identity)

    def _on_request(self, identity: bytes, msg: ChunkRequest) -> None:
        served = self.served
        if served is None:
            return
        manifest = served.manifest
        if msg.version != manifest.version:  # that version is gone: point at the newest instead
            self.loop.send([identity, *served.manifest_frames])
            return
        for index in msg.indices:
            if index >= len(manifest.chunk_crcs):
                raise MessageRejected(RejectReason.INVALID_FIELD, f"chunk {index} of {len(manifest.chunk_crcs)}")
            start, stop = chunk_range(manifest, index)
            chunk = WeightChunk(version=manifest.version, index=index, crc=manifest.chunk_crcs[index],
                                data=served.flat[start:stop])
            self.loop.send([identity, *codec.encode(chunk)])
            self.stats.chunks_sent += 1


class WeightPublisher(WeightSource):
    """Publishes weight versions to WeightSubscribers connected to `address` (see module docstring)."""

    def __init__(self, *, bind_address: str = DEFAULT_BIND, config: BroadcastConfig = BroadcastConfig(),
                 faults: FaultPlan = NO_FAULTS, security: SecurityConfig = NO_SECURITY):
        self._core = PublisherCore(config)
        self._security = security
        endpoint = open_endpoint(zmq.ROUTER, limits=config.limits, security=security, name="weight-publisher",
                                 bind_address=bind_address)
        self.address = endpoint.address
        self._loop = IoLoop("weight-publisher", endpoint.context, endpoint.socket, self._core, faults,
                            routing_frames=1, guard=endpoint.guard)
        self._core.loop = self._loop
        self._loop.start()

    def publish(self, version: int, weights: dict[str, torch.Tensor]) -> None:
        """Snapshot, checksum (and, with keys, digest and sign) on this thread, then serve it as the
        only version (see WeightSource)."""
        core = self._core
        with core.lock:
            last = core.stats.version
        if last is not None and version <= last:
            raise VersionError(f"version {version} is not newer than the last published ({last})")
        manifest, flat = pack_weights(version, weights, core.config.chunk_bytes)
        key, signed = self._security.weights_key, None
        if key is not None:
            signed = sign_manifest(manifest, chunk_digests(flat, core.config.chunk_bytes),
                                   run_id=self._security.run_id, key=key)
        served = _Served(manifest, flat, signed)
        with core.lock:
            if core.stats.version is not None and version <= core.stats.version:
                raise VersionError(f"version {version} is not newer than the last published ({core.stats.version})")
            core.served = served  # the previous snapshot is freed once no send references it
            core.announce = True
            core.stats.version = version
            core.stats.versions_published += 1
        self._loop.wake()

    def stats(self) -> BroadcastStats:
        """Counters snapshot, with the version each subscriber last reported."""
        with self._core.lock:
            snapshot = BroadcastStats(**self._core.stats.as_dict())
            snapshot.rejected = dict(self._core.rejects.counts)
        snapshot.refused = self._loop.refused()
        snapshot.faults = self._loop.injector.counts.as_dict()
        return snapshot

    def close(self) -> None:
        """Stop serving and release the socket."""
        self._loop.stop()

