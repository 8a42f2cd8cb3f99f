"""Per-token cost of the policy and of each drafter, timed inside the engine.

The engine reports each step's drafting and verifying time to its depth policy; a recording
depth policy collects them. The policy's cost is its plain decode step (k = 0); a drafter's
is its drafting time per drafted token at depth k (catch-up included, as in real rollouts).
Requests run without stop tokens so the batch stays at exactly the size being measured.

The zoo is often built on cores shared with other work, which only ever adds time: callers
interleave rounds over all models (so each sees the same load) and keep a low percentile of
the pooled step times, the best estimate of the uncontended cost.
"""

from __future__ import annotations

from collections.abc import Sequence

from rollspec.engine.drafters.base import Drafter
from rollspec.engine.engine import Engine
from rollspec.engine.model import Decoder
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.models.evaluate import engine_config

TIMED_NEW_TOKENS = 64
WARMUP_STEPS = 2
LOW_PERCENTILE = 0.25


class RecordingDepth:
    """A fixed depth that keeps (batch size, draft seconds, target seconds) of every step."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.steps: list[tuple[int, float, float]] = []

    def choose_depth(self, batch_size: int, catch_up_tokens: int = 0) -> int:
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


def step_times_s(policy: Decoder, prompts: list[list[int]], batch_size: int, *, drafter: Drafter | None = None,
                 k: int = 0) -> list[float]:
    """Per-step seconds at the full batch size: decode steps without a drafter, else drafting
    time per drafted token."""
    depth = _timed_run(policy, prompts, batch_size, drafter, k)
    full = [step for step in depth.steps[WARMUP_STEPS:] if step[0] == batch_size]
    return [target_s for _, _, target_s in full] if drafter is None else [draft_s / k for _, draft_s, _ in full]


def low_percentile_ms(times_s: list[float]) -> float:
    """The LOW_PERCENTILE of pooled step times, in milliseconds (nan if there are none)."""
    if not times_s:
        return float("nan")
    ordered = sorted(times_s)
    return 1e3 * ordered[int(LOW_PERCENTILE * (len(ordered) - 1))]
