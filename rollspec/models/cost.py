"""Per-token cost of the policy and of each drafter, timed inside the engine.

The engine reports each step's drafting and verifying time to its depth policy; a recording
depth policy collects them. The policy's cost is its plain decode step (k = 0); a drafter's
is its drafting time per drafted token at depth k (catch-up included, as in real rollouts).
Requests run without stop tokens so the batch stays at exactly the size being measured.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from rollspec.engine.drafters.base import Drafter
from rollspec.engine.engine import Engine
from rollspec.engine.model import Decoder
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.models.evaluate import engine_config

TIMED_NEW_TOKENS = 48
WARMUP_STEPS = 2


class RecordingDepth:
    """A fixed depth that keeps (batch size, draft seconds, target seconds) of every step."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.steps: list[tuple[int, float, float]] = []

    def choose_depth(self, batch_size: int) -> int:
        return self.k

    def observe(self, batch_size: int, k: int, num_accepted: Sequence[int], draft_time_s: float,
                target_time_s: float) -> None:
        self.steps.append((batch_size, draft_time_s, target_time_s))


def _timed_run(policy: Decoder, prompts: list[list[int]], batch_size: int, drafter: Drafter | None,
               k: int) -> RecordingDepth:
    depth = RecordingDepth(k)
    engine = Engine(policy, engine_config(batch_size), drafter=drafter, depth=depth)
    params = SamplingParams(temperature=1.0, max_new_tokens=TIMED_NEW_TOKENS, seed=0)
    engine.generate([Request(request_id=str(i), prompt_ids=tuple(prompts[i % len(prompts)]), params=params)
                     for i in range(batch_size)])
    return depth


def _median_full(depth: RecordingDepth, batch_size: int, column: int) -> float:
    times = [step[column] for step in depth.steps[WARMUP_STEPS:] if step[0] == batch_size]
    return statistics.median(times) if times else float("nan")


def policy_decode_ms(policy: Decoder, prompts: list[list[int]], batch_size: int) -> float:
    """Median wall time of one plain decode step of the whole batch, in milliseconds."""
    return 1e3 * _median_full(_timed_run(policy, prompts, batch_size, None, 0), batch_size, 2)


def drafter_token_ms(policy: Decoder, drafter: Drafter, prompts: list[list[int]], batch_size: int, k: int) -> float:
    """Median drafting time per drafted token (whole batch), in milliseconds."""
    return 1e3 * _median_full(_timed_run(policy, prompts, batch_size, drafter, k), batch_size, 1) / k
