"""A weight publisher whose every answer the test writes: manifests signed right or wrong, chunks
honest or forged. It speaks the real protocol (WeightQuery / ChunkRequest in, manifest / WeightChunk
out) on a real ROUTER socket, so a real WeightSubscriber cannot tell it from a WeightPublisher."""

import threading
import zlib

import torch
import zmq

from rollspec.transport import codec
from rollspec.transport.keys import RunKeys
from rollspec.transport.schemas import ChunkRequest, WeightChunk, WeightQuery
from rollspec.transport.weight_auth import chunk_digests, sign_manifest
from rollspec.transport.weight_layout import chunk_range, pack_weights

CHUNK_BYTES = 4096


class Version:
    """One version as the scripted publisher serves it: manifest frames and chunk bytes by index."""

    def __init__(self, number: int, weights: dict[str, torch.Tensor], *, signer: RunKeys | None,
                 run_id: str | None = None):
        self.number = number
        self.manifest, flat = pack_weights(number, weights, CHUNK_BYTES)
        self.digests = chunk_digests(flat, CHUNK_BYTES)
        if signer is None:
            self.message = self.manifest
        else:
            self.message = sign_manifest(self.manifest, self.digests, run_id=run_id or signer.run_id,
                                         key=signer.weights_key)
        data = bytes(flat.numpy())
        self.chunks = {i: data[slice(*chunk_range(self.manifest, i))] for i in range(len(self.manifest.chunk_crcs))}
        self.crcs = dict(enumerate(self.manifest.chunk_crcs))

    def frames(self) -> list[bytes]:
        return [bytes(f) for f in codec.encode(self.message)]


def forge_crc(data: bytes, target: int) -> bytes:
    """`data` with its last 4 bytes changed so that crc32 == target. CRC32 is affine over GF(2) in
    those bits, so solve the 32x32 system: this is why a CRC proves nothing against an attacker."""
    prefix = data[:-4]
    base = zlib.crc32(prefix + bytes(4))
    pivots: dict[int, tuple[int, int]] = {}  # highest bit -> (crc delta, combination of input bits)
    for bit in range(32):
        vec, mask = zlib.crc32(prefix + (1 << bit).to_bytes(4, "little")) ^ base, 1 << bit
        while vec:
            high = vec.bit_length() - 1
            if high not in pivots:
                pivots[high] = (vec, mask)
                break
            vec, mask = vec ^ pivots[high][0], mask ^ pivots[high][1]
    want, mask = target ^ base, 0
    while want:
        vec, combo = pivots[want.bit_length() - 1]
        want, mask = want ^ vec, mask ^ combo
    forged = prefix + mask.to_bytes(4, "little")
    assert zlib.crc32(forged) == target
    return forged


class ScriptedPublisher:
    """Serves `serve(version)`'s manifest to every query and its chunks to every request."""

    def __init__(self) -> None:
        self._context: zmq.Context = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind("tcp://127.0.0.1:*")
        self.address = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._lock = threading.Lock()
        self._version: Version | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def serve(self, version: Version) -> None:
        with self._lock:
            self._version = version

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()
        self._context.term()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._socket.poll(50):
                continue
            identity, *frames = self._socket.recv_multipart()
            msg = codec.decode(frames)
            with self._lock:
                version = self._version
            if version is None:
                continue
            if type(msg) is WeightQuery:
                self._socket.send_multipart([identity, *version.frames()])
            elif type(msg) is ChunkRequest and msg.version == version.number:
                for index in msg.indices:
                    data = torch.frombuffer(bytearray(version.chunks[index]), dtype=torch.uint8)
                    chunk = WeightChunk(version=version.number, index=index, crc=version.crcs[index], data=data)
                    self._socket.send_multipart([identity, *codec.encode(chunk)])
