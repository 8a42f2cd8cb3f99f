"""Message schemas carried by rollspec's channels: prompts, trajectories and weight versions.

Actors add their own message types with `@register_schema(tag, version)`. The queue's control
messages (Ack and friends) live in protocol.py and are re-exported here.
"""

from typing import Literal

import torch

from rollspec.transport.dtypes import DTYPE_BY_NAME
from rollspec.transport.errors import SchemaError
from rollspec.transport.fields import limit
from rollspec.transport.protocol import Ack, AckConfirm, Deliver, Detach, Heartbeat, PutAck, PutBatch
from rollspec.transport.registry import register_schema

__all__ = [
    "Ack", "AckConfirm", "ChunkRequest", "Deliver", "Detach", "Heartbeat", "PromptItem", "PutAck", "PutBatch",
    "SignedManifest", "Trajectory", "WeightChunk", "WeightManifest", "WeightQuery",
]

MAX_TOKENS = 1 << 20
MAX_DRAFT_POSITIONS = 64
U32 = (1 << 32) - 1


@register_schema("prompt", 1)
class PromptItem:
    """One sample of one prompt to roll out under `policy_version` (the version at dispatch)."""

    prompt_id: str = limit(max_len=256)
    group_id: str = limit(max_len=256)
    sample_index: int = limit(ge=0)
    token_ids: list[int] = limit(max_len=MAX_TOKENS, ge=0)
    policy_version: int = limit(ge=0)


@register_schema("trajectory", 1)
class Trajectory:
    """A finished rollout: completion tokens, the policy's logprobs of them, the weight versions used
    and per-draft-position acceptance counts (accepted[j] <= proposed[j])."""

    prompt_id: str = limit(max_len=256)
    group_id: str = limit(max_len=256)
    sample_index: int = limit(ge=0)
    prompt_token_ids: list[int] = limit(max_len=MAX_TOKENS, ge=0)
    token_ids: list[int] = limit(max_len=MAX_TOKENS, ge=0)
    logprobs: list[float] | torch.Tensor = limit(max_len=MAX_TOKENS, dtypes=(torch.float32,), max_numel=MAX_TOKENS)
    policy_version: int = limit(ge=0)
    draft_version: int = limit(ge=0)
    accepted_per_position: list[int] = limit(max_len=MAX_DRAFT_POSITIONS, ge=0)
    proposed_per_position: list[int] = limit(max_len=MAX_DRAFT_POSITIONS, ge=0)
    finish_reason: Literal["stop", "length", "abort"]

    def check(self) -> None:
        """Cross-field rules (run after the per-field checks)."""
        num_logprobs = self.logprobs.numel() if isinstance(self.logprobs, torch.Tensor) else len(self.logprobs)
        if isinstance(self.logprobs, torch.Tensor) and self.logprobs.dim() != 1:
            raise SchemaError("Trajectory.logprobs", tuple(self.logprobs.shape), "a 1-D tensor")
        if num_logprobs != len(self.token_ids):
            raise SchemaError("Trajectory.logprobs", f"<{num_logprobs} logprobs>",
                              f"one per completion token ({len(self.token_ids)})")
        if len(self.accepted_per_position) != len(self.proposed_per_position):
            raise SchemaError("Trajectory.accepted_per_position", len(self.accepted_per_position),
                              f"as many positions as proposed_per_position ({len(self.proposed_per_position)})")
        for j, (acc, prop) in enumerate(zip(self.accepted_per_position, self.proposed_per_position)):
            if acc > prop:
                raise SchemaError(f"Trajectory.accepted_per_position[{j}]", acc, f"<= proposed ({prop})")


@register_schema("rs.weight_query", 1)
class WeightQuery:
    """Subscriber -> publisher: 'I have `version` (if has_version); tell me when there is a newer one'."""

    has_version: bool
    version: int = limit(ge=0)


@register_schema("rs.weight_manifest", 1)
class WeightManifest:
    """Layout of one weight version: tensors packed at 64-byte aligned offsets in one flat buffer that
    travels as ceil(total_bytes / chunk_bytes) chunks, each with its CRC32."""

    version: int = limit(ge=0)
    total_bytes: int = limit(ge=0)
    chunk_bytes: int = limit(ge=64)
    chunk_crcs: list[int] = limit(ge=0, le=U32)
    names: list[str]
    dtypes: list[str]
    shapes: list[list[int]] = limit(ge=0)
    offsets: list[int] = limit(ge=0)

    def check(self) -> None:
        """Cross-field rules (run after the per-field checks)."""
        num_chunks = -(-self.total_bytes // self.chunk_bytes)
        if len(self.chunk_crcs) != num_chunks:
            raise SchemaError("WeightManifest.chunk_crcs", len(self.chunk_crcs), f"{num_chunks} checksums")
        n = len(self.names)
        if not len(self.dtypes) == len(self.shapes) == len(self.offsets) == n or len(set(self.names)) != n:
            raise SchemaError("WeightManifest.names", n, "unique names, one dtype, shape and offset each")
        for name, dtype_name, shape, offset in zip(self.names, self.dtypes, self.shapes, self.offsets):
            dtype = DTYPE_BY_NAME.get(dtype_name)
            if dtype is None:
                raise SchemaError(f"WeightManifest.dtypes[{name!r}]", dtype_name, f"one of {sorted(DTYPE_BY_NAME)}")
            numel = 1
            for dim in shape:
                numel *= dim
            if offset % 64 or offset + numel * dtype.itemsize > self.total_bytes or len(shape) > 8:
                raise SchemaError(f"WeightManifest.offsets[{name!r}]", offset,
                                  f"64-aligned, <= 8 dims, inside total_bytes {self.total_bytes}")


@register_schema("rs.signed_manifest", 1)
class SignedManifest:
    """Publisher -> subscriber when versions are authenticated: a WeightManifest's encoded body, the
    run it belongs to, a SHA-256 digest per chunk, and an HMAC-SHA256 under the run's weights key over
    all three (see weight_auth.py). Subscribers with keys apply nothing else."""

    run_id: str = limit(max_len=64)
    manifest: bytes = limit(max_len=64 << 20)
    chunk_digests: list[bytes] = limit(max_len=1 << 20)
    mac: bytes = limit(max_len=64)

    def check(self) -> None:
        """Cross-field rules (run after the per-field checks)."""
        if any(len(digest) != 32 for digest in self.chunk_digests):
            raise SchemaError("SignedManifest.chunk_digests", "<digest list>", "32-byte SHA-256 digests")


@register_schema("rs.weight_chunk", 1)
class WeightChunk:
    """Publisher -> subscriber: bytes [index * chunk_bytes, ...) of version `version`'s flat buffer."""

    version: int = limit(ge=0)
    index: int = limit(ge=0)
    crc: int = limit(ge=0, le=U32)
    data: torch.Tensor = limit(dtypes=(torch.uint8,))


@register_schema("rs.chunk_request", 1)
class ChunkRequest:
    """Subscriber -> publisher: send these chunks of `version` (answered with the newest manifest
    instead when `version` is no longer held)."""

    version: int = limit(ge=0)
    indices: list[int] = limit(max_len=4096, ge=0)
