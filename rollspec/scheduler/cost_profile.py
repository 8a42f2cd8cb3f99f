"""A start-up cost profile's checks and its curves in the batch size (CostModel, CatchUpCost)."""

from collections.abc import Mapping

import numpy as np

from rollspec.scheduler.interpolation import PiecewiseLinear


class ProfileError(ValueError):
    """A cost profile that cannot define a cost model (missing points, non-positive or non-finite times)."""


def _check_time(key: object, seconds: float) -> None:
    if not np.isfinite(seconds) or seconds < 0:
        raise ProfileError(f"profile time for {key!r} must be a finite number of seconds >= 0, got {seconds!r}")


def target_rows(target_s: Mapping[tuple[int, int], float], max_q: int) -> tuple[list[PiecewiseLinear], list[int]]:
    """Per profiled verify width q (sorted), c_target(B, q) as a curve in B."""
    by_q: dict[int, dict[int, float]] = {}
    for (batch_size, q), seconds in target_s.items():
        if batch_size < 1 or not 1 <= q <= max_q:
            raise ProfileError(f"target profile point (B={batch_size}, q={q}) needs B >= 1 and 1 <= q <= {max_q}")
        _check_time((batch_size, q), seconds)
        by_q.setdefault(q, {})[batch_size] = seconds
    if len(by_q) < 2:
        raise ProfileError(f"target profile needs two or more verify widths q to price speculation, got {sorted(by_q)}")
    qs = sorted(by_q)
    rows = [PiecewiseLinear(sorted(by_q[q]), [by_q[q][b] for b in sorted(by_q[q])]) for q in qs]
    return rows, qs


def draft_curve(draft_s: Mapping[int, float]) -> PiecewiseLinear:
    """Profiled drafting seconds as a curve in B."""
    if not draft_s:
        raise ProfileError("draft profile is empty; profile at least one batch size (0 s for a free drafter)")
    for batch_size, seconds in draft_s.items():
        if batch_size < 1:
            raise ProfileError(f"draft profile batch size must be >= 1, got {batch_size}")
        _check_time(batch_size, seconds)
    batch_sizes = sorted(draft_s)
    return PiecewiseLinear(batch_sizes, [draft_s[b] for b in batch_sizes])
