"""End-to-end authentication of weight versions: a SHA-256 digest per chunk and an HMAC-SHA256, under
the run's weights key, over the run id, the manifest and those digests.

CRC32 (still sent with every chunk) catches line noise, but anyone can compute, or forge, a CRC:
it proves nothing about who made the bytes. The MAC binds the whole version - layout, version
number, every chunk's digest - to the holder of this run's key, and to this run (a correctly MACed
manifest of another run is refused as WRONG_RUN, so keys reused across runs still cannot replay old
weights). Independent of CURVE: it holds on a plaintext loopback channel too, and it covers the
publisher's snapshot end to end, not only one hop. HMAC, not a signature: every process holding the
run's keys can verify and therefore could also forge; the run's processes are trusted, outsiders are
what it keeps out.
"""

import hashlib
import hmac
import struct

import torch

from rollspec.transport import codec
from rollspec.transport.config import CodecLimits
from rollspec.transport.errors import MessageRejected, RejectReason
from rollspec.transport.schemas import SignedManifest, WeightManifest

DIGEST_BYTES = 32
_CONTEXT = b"rollspec/weight-manifest/v1\0"  # domain separation: this key MACs nothing else
_U64 = struct.Struct("<Q")


def chunk_digests(flat: torch.Tensor, chunk_bytes: int) -> list[bytes]:
    """SHA-256 of each chunk of a flat uint8 snapshot (hashlib releases the GIL on large buffers)."""
    view = flat.numpy().data
    return [hashlib.sha256(view[start:start + chunk_bytes]).digest() for start in range(0, view.nbytes, chunk_bytes)]


def chunk_matches(data: memoryview, digest: bytes) -> bool:
    """Whether `data` hashes to `digest` (constant-time compare)."""
    return hmac.compare_digest(hashlib.sha256(data).digest(), digest)


def _mac(key: bytes, run_id: str, body: bytes, digests: list[bytes]) -> bytes:
    mac = hmac.new(key, _CONTEXT, hashlib.sha256)
    run = run_id.encode()
    # Length-prefixed fields: no two different (run, body, digests) triples feed the MAC the same bytes.
    for part in (run, body):
        mac.update(_U64.pack(len(part)))
        mac.update(part)
    mac.update(_U64.pack(len(digests)))
    for digest in digests:
        mac.update(digest)
    return mac.digest()


def sign_manifest(manifest: WeightManifest, digests: list[bytes], *, run_id: str, key: bytes) -> SignedManifest:
    """The SignedManifest a publisher of run `run_id` sends for `manifest`."""
    body, frames = codec.encode_body(manifest)
    assert not frames  # a manifest holds no tensors
    return SignedManifest(run_id=run_id, manifest=body, chunk_digests=digests,
                          mac=_mac(key, run_id, body, digests))


def open_signed(msg: SignedManifest, *, run_id: str, key: bytes | None,
                limits: CodecLimits) -> tuple[WeightManifest, list[bytes]]:
    """The manifest and chunk digests of `msg` after checking its MAC and run (skipped without a key:
    a subscriber that has no keys trusts its channel). MessageRejected(UNAUTHENTICATED / WRONG_RUN /
    INVALID_FIELD) otherwise."""
    if key is not None:
        if not hmac.compare_digest(_mac(key, msg.run_id, msg.manifest, msg.chunk_digests), msg.mac):
            raise MessageRejected(RejectReason.UNAUTHENTICATED,
                                  f"weight manifest MAC does not verify under run {run_id!r}'s key")
        if msg.run_id != run_id:
            raise MessageRejected(RejectReason.WRONG_RUN, f"weight manifest of run {msg.run_id!r}, this is {run_id!r}")
    manifest = codec.decode_body(msg.manifest, (), limits=limits)
    if type(manifest) is not WeightManifest:
        raise MessageRejected(RejectReason.INVALID_FIELD, f"signed body holds a {type(manifest).__name__}")
    if len(msg.chunk_digests) != len(manifest.chunk_crcs):
        raise MessageRejected(RejectReason.INVALID_FIELD, f"{len(msg.chunk_digests)} digests for "
                              f"{len(manifest.chunk_crcs)} chunks")
    return manifest, msg.chunk_digests
