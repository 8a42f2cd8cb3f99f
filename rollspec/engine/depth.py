"""How the engine asks for a speculation depth each step. The adaptive policy lives in
scheduler/ and is plugged in by the caller; the engine only knows this protocol."""

from __future__ import annotations

from typing import Protocol, Sequence


class PlainLease(Protocol):
    """Plain decoding stands for `steps` more steps while the batch holds at least `min_batch_size` rows; the
    engine counts `steps` down, the depth policy may renew or revoke it."""

    steps: int
    min_batch_size: int


class DepthPolicy(Protocol):
    """Asked for k before every step and told what the step did. A policy may also offer
    `plain_lease() -> PlainLease`, asked after it chose k = 0: for the steps the lease covers the
    engine asks neither it nor the drafter (`catch_up_tokens`) and decodes plainly; `observe` is
    still called every step."""

    def choose_depth(self, batch_size: int, catch_up_tokens: int = 0) -> int:
        """Draft depth for the next step; 0 means plain decoding. `catch_up_tokens` is the width of
        the drafter's catch-up forward should this step speculate (`Drafter.catch_up_tokens`)."""

    def observe(self, batch_size: int, k: int, num_accepted: Sequence[int], draft_time_s: float,
                target_time_s: float) -> None:
        """What the step did: accepted drafts per row and the time spent drafting and verifying."""


class FixedDepth:
    """The same k every step."""

    def __init__(self, k: int) -> None:
        if k < 0:
            raise ValueError(f"speculation depth must be >= 0, got {k}")
        self.k = k

    def choose_depth(self, batch_size: int, catch_up_tokens: int = 0) -> int:
        return self.k

    def observe(self, batch_size: int, k: int, num_accepted: Sequence[int], draft_time_s: float,
                target_time_s: float) -> None:
        pass
