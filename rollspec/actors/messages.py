"""Messages of the actor pipeline: a prompt group on `prompts`, a rollout record on `trajectories` and `scored`.

Ids: a group's message id is its prompt id (`p<index>`); sample j's record has message id
`p<index>/<j>` on both downstream queues. Each downstream id is a function of the upstream id, so
a prompt redelivered after a rollout actor died produces records the queues drop as duplicates.

One record schema serves both downstream queues: the rollout actor fills the generation fields,
the reward actor returns a copy with the score fields set. A record that could not be generated
or scored carries a `drop_reason` (DROP_LENGTH, DROP_BAD_PROMPT, DROP_REWARD_ERROR) and the
detail in `error`; the learner feed drops it with that reason (invariant 2: trained once, or
dropped with a reason).
"""

from typing import Literal

import torch

from rollspec.transport import SchemaError, limit, register_schema

MAX_TOKENS = 1 << 20
MAX_DRAFT_POSITIONS = 64
MAX_ERROR_CHARS = 2000
MAX_GROUP_SIZE = 1024

DROP_LENGTH = "length"
"""The prompt (plus max_new_tokens) does not fit the engine's max_seq_len."""
DROP_BAD_PROMPT = "bad_prompt"
"""The engine rejected the prompt (empty, token ids outside the vocabulary)."""
DROP_BAD_TOKENS = "bad_tokens"
"""Token ids outside the policy's vocabulary, or logprobs that are not finite values <= 0."""
DROP_REWARD_ERROR = "reward_error"
"""The reward function raised, timed out, crashed or returned a non-finite value or a non-number."""


def prompt_id_of(prompt_index: int) -> str:
    """The id of the prompt drawn at `prompt_index` of the prompt source (also its GRPO group id)."""
    return f"p{prompt_index}"


def sample_id_of(prompt_id: str, sample_index: int) -> str:
    """Message id of sample `sample_index` of a prompt group, on the trajectories and scored queues."""
    return f"{prompt_id}/{sample_index}"


@register_schema("rs.prompt_group", 1)
class PromptGroup:
    """One prompt to complete `group_size` times (a GRPO group), dispatched when the policy was
    `policy_version`. Sample j is seeded with `seed + j`, so a re-issued prompt samples the same
    way under the same weights."""

    prompt_id: str = limit(max_len=64)
    prompt_index: int = limit(ge=0)
    token_ids: list[int] = limit(max_len=MAX_TOKENS, ge=0)
    group_size: int = limit(ge=1, le=MAX_GROUP_SIZE)
    policy_version: int = limit(ge=0)
    seed: int = limit(ge=0, le=(1 << 62))
    issued_at: float = limit(ge=0)


@register_schema("rs.rollout_record", 1)
class RolloutRecord:
    """One completion of one prompt: tokens, the policy's logprob of each, the weight versions that
    generated it (one policy version for every token: rollout actors swap weights only between
    generations), speculation counters, and once scored, its reward."""

    prompt_id: str = limit(max_len=64)
    prompt_index: int = limit(ge=0)
    sample_index: int = limit(ge=0, le=MAX_GROUP_SIZE)
    group_size: int = limit(ge=1, le=MAX_GROUP_SIZE)
    prompt_token_ids: list[int] = limit(max_len=MAX_TOKENS, ge=0)
    token_ids: list[int] = limit(max_len=MAX_TOKENS, ge=0)
    logprobs: torch.Tensor = limit(dtypes=(torch.float32,), max_numel=MAX_TOKENS)
    finish_reason: Literal["stop", "length", "abort"]
    policy_version: int = limit(ge=0)
    draft_version: int = limit(ge=0)
    proposed_per_position: list[int] = limit(max_len=MAX_DRAFT_POSITIONS, ge=0)
    accepted_per_position: list[int] = limit(max_len=MAX_DRAFT_POSITIONS, ge=0)
    num_verify_steps: int = limit(ge=0)
    num_decode_steps: int = limit(ge=0)
    actor: str = limit(max_len=128)
    issued_at: float = limit(ge=0)
    generated_at: float = limit(ge=0)
    drop_reason: str = limit(max_len=64, default="")
    """Non-empty when this sample must not be trained on: one of the DROP_* reasons."""
    error: str = limit(max_len=MAX_ERROR_CHARS, default="")
    """What went wrong, for a record with a drop_reason."""
    reward: float = limit(default=0.0)
    scored_at: float = limit(ge=0, default=0.0)
    """When the reward actor scored it (0.0 before)."""

    def check(self) -> None:
        """Cross-field rules: one logprob per token, sample index inside the group, accepted <= proposed."""
        if self.logprobs.dim() != 1 or self.logprobs.numel() != len(self.token_ids):
            raise SchemaError("RolloutRecord.logprobs", tuple(self.logprobs.shape),
                              f"a 1-D tensor with one logprob per token ({len(self.token_ids)})")
        if self.sample_index >= self.group_size:
            raise SchemaError("RolloutRecord.sample_index", self.sample_index, f"< group_size ({self.group_size})")
        if len(self.accepted_per_position) != len(self.proposed_per_position):
            raise SchemaError("RolloutRecord.accepted_per_position", len(self.accepted_per_position),
                              f"one count per proposed position ({len(self.proposed_per_position)})")
        for j, (accepted, proposed) in enumerate(zip(self.accepted_per_position, self.proposed_per_position)):
            if accepted > proposed:
                raise SchemaError(f"RolloutRecord.accepted_per_position[{j}]", accepted, f"<= proposed ({proposed})")

    @property
    def msg_id(self) -> str:
        """This record's message id on the trajectories and scored queues."""
        return sample_id_of(self.prompt_id, self.sample_index)

    @property
    def num_accepted(self) -> int:
        """Draft tokens accepted over the whole completion."""
        return sum(self.accepted_per_position)
