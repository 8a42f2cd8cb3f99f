"""Estimators for the scheduler benchmark: medians, spread, and adaptive vs the best fixed k without selection bias.

"Best fixed k" taken as the max of the fixed contenders' medians over the same repeats the adaptive one is
scored on is biased upwards: with five noisy contenders near a tie, the max picks whichever was lucky. The
split-half estimate picks the best k on one half of the repeats and scores adaptive against it on the other
half (both ways round, geometric mean), so the selection noise and the scoring noise are independent.
"""

from __future__ import annotations

import math
import random
import statistics

BOOTSTRAP_SAMPLES = 2000


def spread(values: list[float]) -> float:
    """Max over min of the repeats, minus one: how far identical-work runs moved (0.05 = 5%)."""
    return max(values) / min(values) - 1.0 if values and min(values) > 0 else float("nan")


def paired_ratio(values: list[float], baseline: list[float]) -> float:
    """Median over repeats of value / baseline, each pair run back to back (machine drift cancels in a pair)."""
    return statistics.median(v / b for v, b in zip(values, baseline))


def paired_ci(values: list[float], baseline: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """`paired_ratio` and a `level` confidence interval for it: percentile bootstrap over the repeats' pair ratios
    (seeded: the same runs give the same interval). Pairs cancel drift; the bootstrap leaves the noise's shape free
    (a co-tenant's burst makes a few pairs far off, not a normal spread)."""
    ratios = [v / b for v, b in zip(values, baseline)]
    if len(ratios) < 2:
        return (ratios[0], ratios[0], ratios[0]) if ratios else (math.nan, math.nan, math.nan)
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(BOOTSTRAP_SAMPLES))
    tail = int((1.0 - level) / 2 * BOOTSTRAP_SAMPLES)
    return statistics.median(ratios), medians[tail], medians[BOOTSTRAP_SAMPLES - 1 - tail]


def split_half_ratio(adaptive: list[float], fixed: dict[str, list[float]]) -> tuple[float, list[str]] | None:
    """Adaptive over the best fixed contender, the best chosen on even repeats and scored on odd ones and the other
    way round (geometric mean of the two); None with fewer than two repeats. Also returns the two choices."""
    if len(adaptive) < 2:
        return None
    halves = (slice(0, None, 2), slice(1, None, 2))
    ratios, chosen = [], []
    for pick, score in (halves, halves[::-1]):
        best = max(fixed, key=lambda name: statistics.median(fixed[name][pick]))
        chosen.append(best)
        ratios.append(statistics.median(adaptive[score]) / statistics.median(fixed[best][score]))
    return math.sqrt(ratios[0] * ratios[1]), chosen
