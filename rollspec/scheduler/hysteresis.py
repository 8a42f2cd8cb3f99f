"""Keep the current speculation depth unless another is clearly faster (DepthScheduler's step 2)."""

from collections.abc import Sequence


def hysteresis_depth(current: int, rate: Sequence[float], start_rate: Sequence[float], *, start_gain: float,
                     hysteresis: float) -> int:
    """The greedy depth given the current one: argmax of `rate` (of `start_rate` from k = 0, which carries the
    catch-up of leaving plain decoding), kept at `current` unless the argmax beats it by more than `hysteresis`
    (`start_gain` when leaving k = 0), and never kept when predicted slower than k = 0."""
    ranked = rate if current else start_rate
    best = max(range(len(ranked)), key=ranked.__getitem__)  # the first best, as argmax's
    if current == 0 and best != 0 and start_rate[best] <= rate[0] * (1.0 + start_gain):
        best = 0
    within_margin = rate[best] <= rate[current] * (1.0 + hysteresis)
    if best != current and within_margin and rate[current] >= rate[0]:
        best = current
    return best
