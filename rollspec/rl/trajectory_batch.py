"""Scored rollouts -> the padded tensors the GRPO loss reads, and their deterministic split into
per-rank shards of micro-batches.

Shape legend: B sequences, T padded sequence length (prompt + completion).

Alignment: column t of every per-token tensor belongs to the prediction made at position t, i.e.
to token input_ids_BT[:, t + 1]. A prompt of P tokens followed by a completion of n tokens puts
the completion's j-th token at index P + j, predicted at position P + j - 1, so the response mask
is 1 on columns [P - 1, P - 1 + n). The last column predicts nothing and is always masked, which
keeps every tensor the same [B, T] shape as the logits the model returns.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from rollspec.rl.advantages import DEFAULT_ADVANTAGE_CONFIG, group_advantages
from rollspec.rl.config import AdvantageConfig
from rollspec.rl.vocab import PAD_ID

MAX_LOGPROB = 1e-4


class TrajectoryBatchError(ValueError):
    """A rollout that cannot become a training row, or a split that cannot be made."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RolloutSample:
    """One scored rollout, as the learner needs it (field names follow `transport.Trajectory`).

    `logprobs[j]` is the behaviour policy's log-probability of `token_ids[j]` under the processed
    distribution it was sampled from (see `engine.sampler`), at weights `policy_version`.
    """

    prompt_token_ids: Sequence[int]
    token_ids: Sequence[int]
    logprobs: Sequence[float] | torch.Tensor
    reward: float
    group_id: str
    policy_version: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TrajectoryBatch:
    """Right-padded training rows (see the module docstring for the column alignment).

    `loss_normalizer` is what the loss divides its token sum by. For a whole batch it is the
    batch's response-token count (the DAPO token mean); `split` sets it to total / world_size on
    every micro-batch, so that summing micro-batch gradients on each rank and averaging across
    ranks (what data parallelism does) yields exactly the whole batch's token-mean gradient.
    """

    input_ids_BT: torch.Tensor
    response_mask_BT: torch.Tensor
    behaviour_logprobs_BT: torch.Tensor
    advantages_B: torch.Tensor
    policy_versions_B: torch.Tensor
    sequence_lengths_B: torch.Tensor
    loss_normalizer: float

    @property
    def num_sequences(self) -> int:
        """Rows, including all-masked filler rows added by `split`."""
        return self.input_ids_BT.shape[0]

    @property
    def num_tokens(self) -> int:
        """Response tokens the loss is taken over."""
        return int(self.response_mask_BT.sum().item())

    def select(self, rows: Sequence[int]) -> TrajectoryBatch:
        """The given rows, in order, trimmed to their longest sequence; the normalizer is kept."""
        if not rows:
            raise TrajectoryBatchError("select needs at least one row")
        index = torch.as_tensor(list(rows), dtype=torch.long)
        lengths = self.sequence_lengths_B[index]
        width = int(lengths.max().item())
        return dataclasses.replace(
            self,
            input_ids_BT=self.input_ids_BT[index, :width],
            response_mask_BT=self.response_mask_BT[index, :width],
            behaviour_logprobs_BT=self.behaviour_logprobs_BT[index, :width],
            advantages_B=self.advantages_B[index],
            policy_versions_B=self.policy_versions_B[index],
            sequence_lengths_B=lengths,
        )

    def micro_batches(self, micro_batch_size: int) -> list[TrajectoryBatch]:
        """Consecutive chunks of at most `micro_batch_size` rows (the last may be smaller)."""
        _check_positive("micro_batch_size", micro_batch_size)
        rows = list(range(self.num_sequences))
        return [self.select(rows[i: i + micro_batch_size]) for i in range(0, len(rows), micro_batch_size)]

    def split(self, world_size: int, micro_batch_size: int) -> list[list[TrajectoryBatch]]:
        """Shards for `world_size` data-parallel ranks, each a list of micro-batches.

        Rank r takes rows r, r + world_size, ... in order, cut into micro-batches of
        `micro_batch_size`. Every rank gets the same number of micro-batches, because every
        micro-batch is a collective step under ZeRO: a rank with fewer rows is topped up with
        filler micro-batches whose one row is fully masked (zero loss, zero gradient). Each
        micro-batch's normalizer is total response tokens / world_size (see the class docstring).
        Deterministic: the same batch and arguments give the same shards.
        """
        _check_positive("world_size", world_size)
        _check_positive("micro_batch_size", micro_batch_size)
        per_rank = -(-self.num_sequences // world_size)
        num_micro = -(-per_rank // micro_batch_size)
        normalizer = max(self.num_tokens, 1) / world_size
        shards = []
        for rank in range(world_size):
            rows = list(range(rank, self.num_sequences, world_size))
            micro = [self.select(rows[i: i + micro_batch_size]) for i in range(0, len(rows), micro_batch_size)]
            micro += [filler_batch() for _ in range(num_micro - len(micro))]
            shards.append([dataclasses.replace(m, loss_normalizer=normalizer) for m in micro])
        return shards


def filler_batch() -> TrajectoryBatch:
    """One fully masked row of two pad tokens: runs the forward and backward passes (so the rank
    joins every collective) and contributes exactly zero loss and gradient."""
    return TrajectoryBatch(
        input_ids_BT=torch.full((1, 2), PAD_ID, dtype=torch.long),
        response_mask_BT=torch.zeros(1, 2),
        behaviour_logprobs_BT=torch.zeros(1, 2),
        advantages_B=torch.zeros(1),
        policy_versions_B=torch.zeros(1, dtype=torch.long),
        sequence_lengths_B=torch.full((1,), 2, dtype=torch.long),
        loss_normalizer=1.0,
    )


def build_batch(samples: Sequence[RolloutSample],
                advantage_config: AdvantageConfig = DEFAULT_ADVANTAGE_CONFIG) -> TrajectoryBatch:
    """Pad `samples` into one batch, in order, with advantages normalized within each group_id.

    Raises TrajectoryBatchError for an empty batch, an empty prompt (the first completion token
    needs a position to be predicted from), a logprob count that differs from the completion's
    token count, or a logprob that is not a finite value <= 0.
    """
    if not samples:
        raise TrajectoryBatchError("cannot build a batch from zero samples")
    for i, sample in enumerate(samples):
        _check_sample(i, sample)
    lengths = [len(s.prompt_token_ids) + len(s.token_ids) for s in samples]
    width = max(lengths)
    input_ids = torch.full((len(samples), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros(len(samples), width)
    behaviour = torch.zeros(len(samples), width)
    for row, sample in enumerate(samples):
        num_prompt, num_new = len(sample.prompt_token_ids), len(sample.token_ids)
        input_ids[row, : num_prompt + num_new] = torch.tensor([*sample.prompt_token_ids, *sample.token_ids])
        predicting = slice(num_prompt - 1, num_prompt - 1 + num_new)
        mask[row, predicting] = 1.0
        behaviour[row, predicting] = torch.as_tensor(sample.logprobs, dtype=torch.float32).reshape(-1)
    group_index: dict[str, int] = {}
    group_ids = torch.tensor([group_index.setdefault(s.group_id, len(group_index)) for s in samples])
    rewards = torch.tensor([float(s.reward) for s in samples], dtype=torch.float64)
    return TrajectoryBatch(
        input_ids_BT=input_ids,
        response_mask_BT=mask,
        behaviour_logprobs_BT=behaviour,
        advantages_B=group_advantages(rewards, group_ids, advantage_config).float(),
        policy_versions_B=torch.tensor([s.policy_version for s in samples], dtype=torch.long),
        sequence_lengths_B=torch.tensor(lengths, dtype=torch.long),
        loss_normalizer=float(max(int(mask.sum().item()), 1)),
    )


def _check_sample(index: int, sample: RolloutSample) -> None:
    if len(sample.prompt_token_ids) == 0:
        raise TrajectoryBatchError(f"sample {index} (group {sample.group_id!r}) has an empty prompt")
    logprobs = torch.as_tensor(sample.logprobs, dtype=torch.float32).reshape(-1)
    if logprobs.numel() != len(sample.token_ids):
        raise TrajectoryBatchError(
            f"sample {index} (group {sample.group_id!r}) has {logprobs.numel()} logprobs for "
            f"{len(sample.token_ids)} completion tokens; expected one per token")
    # A processed probability can round to a hair above 1 in float32; only clear nonsense is rejected.
    bad = ~(torch.isfinite(logprobs) & (logprobs <= MAX_LOGPROB))
    if bad.any():
        position = int(torch.nonzero(bad)[0, 0])
        raise TrajectoryBatchError(
            f"sample {index} (group {sample.group_id!r}) logprob {logprobs[position].item()!r} at token {position} "
            f"is not a finite value <= 0")
    if not math.isfinite(float(sample.reward)):
        raise TrajectoryBatchError(f"sample {index} (group {sample.group_id!r}) reward {sample.reward!r} is not finite")


def _check_positive(name: str, value: int) -> None:
    if not (isinstance(value, int) and value >= 1):
        raise TrajectoryBatchError(f"{name} must be an int >= 1, got {value!r}")
