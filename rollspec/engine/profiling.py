"""Measure the engine's real step costs on the device it runs on: c_target(B, q), the verify (or
decode, q = 1) step of B rows with q tokens each, c_draft(B, k) = a(B) + k b(B), drafting time
per speculative step and per drafted position, and the drafter's catch-up cost per token of width beyond a steady step's (what the
first speculative step after plain steps pays). Timings come from inside Engine.step (what the depth policy observes), so they include
sampling, verification and bookkeeping, not just the forward pass."""

from __future__ import annotations

import dataclasses
import statistics
from typing import Callable, Sequence

import torch

from rollspec.engine.config import EngineConfig
from rollspec.engine.drafters.base import DraftContext, Drafter, Proposal
from rollspec.engine.engine import Engine
from rollspec.engine.model import Decoder
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request

CATCH_UP_PLAIN_STEPS = 8  # plain steps before a timed catch-up: ~8 tokens of excess width per row


class StepTimeRecorder:
    """A depth policy that plays a schedule of depths and records every step's timings."""

    def __init__(self, schedule: Sequence[int]) -> None:
        self.schedule = list(schedule)
        self.steps: list[tuple[int, int, float, float]] = []  # (batch size, k, draft s, target s)
        self.catch_up_tokens: list[int] = []  # per step, the drafter's catch-up width it was offered
        self._offered = 0

    def choose_depth(self, batch_size: int, catch_up_tokens: int = 0) -> int:
        self._offered = catch_up_tokens
        return self.schedule[min(len(self.steps), len(self.schedule) - 1)]

    def observe(self, batch_size: int, k: int, num_accepted: Sequence[int], draft_time_s: float,
                target_time_s: float) -> None:
        self.steps.append((batch_size, k, draft_time_s, target_time_s))
        self.catch_up_tokens.append(self._offered)


class RepeatDrafter:
    """Proposes k copies of each row's pending token: free drafting, so a verify step's time is
    the target's alone."""

    name = "repeat"
    uses_policy_hidden = False
    version = 0

    def propose(self, ctx: DraftContext, k: int) -> Proposal:
        device = ctx.tokens_BM.device
        last_B = ctx.tokens_BM[torch.arange(ctx.num_rows, device=device), torch.tensor(ctx.context_lens, device=device) - 1]
        return Proposal(last_B[:, None].expand(-1, k).contiguous(), None)

    def catch_up_tokens(self, context_lens: list[int]) -> int:
        return 0

    def commit(self, committed_lens: list[int]) -> None: ...

    def reset_row(self, row: int) -> None: ...

    def move_row(self, src: int, dst: int) -> None: ...

    def finish_row(self, row: int, group_id: str | None, token_ids: list[int]) -> None: ...

    def update(self, weights: dict[str, torch.Tensor], version: int) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class CostProfile:
    """Seconds per (batch size, q) verify step; at each batch size, drafting's per-position and per-step parts
    b(B) and a(B), and seconds per token of drafter catch-up width beyond a steady step's (empty without a
    drafter)."""

    target_s: dict[tuple[int, int], float]
    draft_s: dict[int, float]
    catch_up_s: dict[int, float] = dataclasses.field(default_factory=dict)
    draft_fixed_s: dict[int, float] = dataclasses.field(default_factory=dict)


def _run(policy: Decoder, config: EngineConfig, drafter: Drafter, schedule: list[int], batch_size: int,
         prompt_len: int) -> StepTimeRecorder:
    recorder = StepTimeRecorder(schedule)
    engine = Engine(policy, dataclasses.replace(config, max_batch_size=batch_size), drafter=drafter, depth=recorder)
    vocab = policy.config.vocab_size
    # No stop tokens and a budget longer than the schedule: the batch stays at batch_size throughout.
    params = SamplingParams(temperature=1.0, max_new_tokens=min(config.max_seq_len - prompt_len,
                                                                (len(schedule) + 1) * (config.k_max + 1)), seed=0)
    for row in range(batch_size):
        prompt = tuple((row * 7 + i * 3) % vocab for i in range(prompt_len))
        engine.add_request(Request(request_id=f"profile-{row}", prompt_ids=prompt, params=params))
    for _ in schedule:
        engine.step()
    return recorder


@torch.no_grad()
def profile_step_costs(policy: Decoder, config: EngineConfig, *, batch_sizes: Sequence[int], qs: Sequence[int],
                       drafter_factory: Callable[[EngineConfig], Drafter] | None = None, repeats: int = 3,
                       prompt_len: int = 32) -> CostProfile:
    """Time verify steps for every (B, q) and, given a drafter, its cost per drafted position.
    The first step of every batch size is a warm-up and is discarded."""
    target_s: dict[tuple[int, int], float] = {}
    draft_s: dict[int, float] = {}
    catch_up_s: dict[int, float] = {}
    draft_fixed_s: dict[int, float] = {}
    depths = [q - 1 for q in qs]
    for batch_size in batch_sizes:
        schedule = [depths[0]] + [k for k in depths for _ in range(repeats)]
        steps = _run(policy, config, RepeatDrafter(), schedule, batch_size, prompt_len).steps[1:]
        for k in depths:
            # Minima: a co-tenant only ever adds time, and a profile taken under load (median c_draft(1)
            # 17 ms at load 9 against 0.3 ms quiet) kept the scheduler from depths it never re-measured.
            target_s[(batch_size, k + 1)] = min(t for b, kk, _, t in steps if kk == k)
        if drafter_factory is not None:
            drafter = drafter_factory(dataclasses.replace(config, max_batch_size=batch_size))
            draft_fixed_s[batch_size], draft_s[batch_size], catch_up_s[batch_size] = _draft_costs(
                policy, config, drafter, batch_size, prompt_len, repeats)
    return CostProfile(target_s, draft_s, catch_up_s, draft_fixed_s)


def _draft_costs(policy: Decoder, config: EngineConfig, drafter: Drafter, batch_size: int, prompt_len: int,
                 repeats: int) -> tuple[float, float, float]:
    """Drafting's per-step part a(B) and per-position part b(B) through steady steps at k_max and at k = 1,
    and the catch-up slope from k = 1 steps right after CATCH_UP_PLAIN_STEPS plain steps against steady k = 1
    steps (excess width: tokens beyond k + 1)."""
    k = config.k_max
    schedule = [k] * (repeats + 1) + [1] * (repeats + 1) + ([0] * CATCH_UP_PLAIN_STEPS + [1]) * repeats
    recorder = _run(policy, config, drafter, schedule, batch_size, prompt_len)
    steps = [(kk, d, max(0, t - kk - 1)) for (_, kk, d, _), t in zip(recorder.steps, recorder.catch_up_tokens)]
    at_k_max = min(d for kk, d, _ in steps[1: repeats + 1])
    # The first k = 1 step follows a k_max step (a wider catch-up than steady k = 1): skipped.
    steady = steps[repeats + 2: 2 * repeats + 2]
    if k < 2 or not steady:
        return 0.0, at_k_max / k, 0.0
    at_one = min(d for _, d, _ in steady)
    # Two depths fix the line; noise that puts k_max below k = 1 leaves the per-step part alone.
    per_position = max(0.0, (at_k_max - at_one) / (k - 1))
    fixed = max(0.0, min(at_one, at_k_max) - per_position)
    after = [step for step in steps[2 * repeats + 2:] if step[0] == 1]
    if not after:
        return fixed, per_position, 0.0
    # Minima, not medians: the difference of two small noisy times, and contention only ever adds time.
    width = statistics.median(x for _, _, x in after) - statistics.median(x for _, _, x in steady)
    extra_s = min(d for _, d, _ in after) - at_one
    return fixed, per_position, max(0.0, extra_s / width) if width > 0 else 0.0
