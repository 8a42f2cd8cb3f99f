"""Per-request sampling parameters, validated at construction."""

from __future__ import annotations

import dataclasses
import math

from rollspec.engine.errors import InvalidSamplingParamsError


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SamplingParams:
    """How one request is sampled. temperature 0 is greedy; top_k 0 and top_p 1 keep the whole
    vocabulary. Generation stops at any of stop_token_ids or after max_new_tokens."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise InvalidSamplingParamsError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if not (0.0 < self.top_p <= 1.0):
            raise InvalidSamplingParamsError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not (isinstance(self.top_k, int) and self.top_k >= 0):
            raise InvalidSamplingParamsError(f"top_k must be an int >= 0 (0 disables it), got {self.top_k!r}")
        if not (isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1):
            raise InvalidSamplingParamsError(f"max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")
        if not all(isinstance(t, int) and t >= 0 for t in self.stop_token_ids):
            raise InvalidSamplingParamsError(f"stop_token_ids must be non-negative ints, got {self.stop_token_ids!r}")
        if self.seed is not None and not isinstance(self.seed, int):
            raise InvalidSamplingParamsError(f"seed must be an int or None, got {self.seed!r}")

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0.0
