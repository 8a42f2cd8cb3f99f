"""A request, the live state of its sequence, and the completion it becomes."""

from __future__ import annotations

import dataclasses
import random
from typing import Literal

from rollspec.engine.sampling_params import SamplingParams


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One prompt to complete. Requests sharing a group_id are GRPO siblings (the n-gram drafter
    looks up their earlier completions)."""

    request_id: str
    prompt_ids: tuple[int, ...]
    params: SamplingParams = SamplingParams()
    group_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SpecStats:
    """Speculation counters for one completion; positions are 1-based draft positions (index 0 = first draft)."""

    num_decode_steps: int
    num_verify_steps: int
    drafted_per_position: tuple[int, ...]
    accepted_per_position: tuple[int, ...]

    @property
    def num_drafted(self) -> int:
        return sum(self.drafted_per_position)

    @property
    def num_accepted(self) -> int:
        return sum(self.accepted_per_position)

    @property
    def acceptance_length(self) -> float:
        """Tokens emitted per verify step (accepted drafts + the one the target adds); 1.0 with no verify step."""
        return 1.0 + self.num_accepted / self.num_verify_steps if self.num_verify_steps else 1.0


FinishReason = Literal["stop", "length"]


@dataclasses.dataclass(frozen=True, slots=True)
class Completion:
    """What one request produced: token ids with the policy's logprob of each, why it ended, and
    the weight versions it was generated with."""

    request_id: str
    group_id: str | None
    prompt_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: FinishReason
    stats: SpecStats
    policy_version: int
    draft_version: int


class Sequence:
    """Mutable state of one generating sequence. Every token but the last (pending) one is in the
    KV cache: cache_len == len(token_ids) - 1 once the prompt is prefilled."""

    __slots__ = ("request", "token_ids", "logprobs", "cache_len", "generator", "finish_reason", "policy_version",
                 "draft_version", "num_decode_steps", "num_verify_steps", "drafted", "accepted")

    def __init__(self, request: Request, generator: random.Random, *, k_max: int, policy_version: int,
                 draft_version: int) -> None:
        self.request = request
        self.token_ids = list(request.prompt_ids)
        self.logprobs: list[float] = []
        self.cache_len = 0
        self.generator = generator
        self.finish_reason: FinishReason | None = None
        self.policy_version = policy_version
        self.draft_version = draft_version
        self.num_decode_steps = 0
        self.num_verify_steps = 0
        self.drafted = [0] * k_max
        self.accepted = [0] * k_max

    @property
    def num_generated(self) -> int:
        return len(self.token_ids) - len(self.request.prompt_ids)

    def append(self, tokens: list[int], logprobs: list[float]) -> int:
        """Append emitted tokens up to a stop token or the budget; return how many were kept."""
        params = self.request.params
        budget = params.max_new_tokens - self.num_generated
        kept = 0
        for token in tokens[:budget]:
            kept += 1
            if token in params.stop_token_ids:
                self.finish_reason = "stop"
                break
        self.token_ids.extend(tokens[:kept])
        self.logprobs.extend(logprobs[:kept])
        if self.finish_reason is None and self.num_generated >= params.max_new_tokens:
            self.finish_reason = "length"
        return kept

    def record_verify(self, k: int, num_accepted: int) -> None:
        self.num_verify_steps += 1
        for j in range(k):
            self.drafted[j] += 1
            if j < num_accepted:
                self.accepted[j] += 1

    def to_completion(self) -> Completion:
        request = self.request
        return Completion(
            request_id=request.request_id, group_id=request.group_id, prompt_ids=request.prompt_ids,
            token_ids=tuple(self.token_ids[len(request.prompt_ids):]), logprobs=tuple(self.logprobs),
            finish_reason=self.finish_reason or "length",
            stats=SpecStats(self.num_decode_steps, self.num_verify_steps, tuple(self.drafted), tuple(self.accepted)),
            policy_version=self.policy_version, draft_version=self.draft_version)
