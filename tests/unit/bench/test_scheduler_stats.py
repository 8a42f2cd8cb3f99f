"""The scheduler benchmark's estimators: the split-half comparison with the best fixed k is unbiased where the
post-hoc one (best of the medians) is not."""

import statistics

import numpy as np

from bench.scheduler_stats import paired_ci, paired_ratio, split_half_ratio, spread


def test_split_half_picks_on_one_half_and_scores_on_the_other():
    fixed = {"fixed-0": [100.0, 100.0, 100.0, 100.0], "fixed-1": [90.0, 120.0, 90.0, 120.0]}
    # fixed-1 wins the odd repeats only: chosen there, it is scored on the even ones (and fixed-0 the other way).
    ratio, chosen = split_half_ratio([99.0] * 4, fixed)
    assert chosen == ["fixed-0", "fixed-1"]
    assert ratio == np.sqrt(99.0 / 100.0 * 99.0 / 90.0)
    assert split_half_ratio([99.0], {"fixed-0": [100.0]}) is None


def test_a_tie_of_noisy_contenders_is_scored_even_by_the_split_half_and_low_by_the_best_of_the_medians():
    rng = np.random.default_rng(0)
    post_hoc, split = [], []
    for _ in range(400):  # five fixed contenders and the adaptive one all equally fast, 5% noise, 6 repeats
        runs = {f"fixed-{k}": list(np.exp(rng.normal(0, 0.05, 6))) for k in (0, 1, 2, 4, 8)}
        adaptive = list(np.exp(rng.normal(0, 0.05, 6)))
        post_hoc.append(statistics.median(adaptive) / max(statistics.median(v) for v in runs.values()))
        split.append(split_half_ratio(adaptive, runs)[0])
    assert np.mean(post_hoc) < 0.98  # ~2.7% low: as much as the margin the 0.97 target leaves
    assert abs(np.mean(split) - 1.0) < 0.01


def test_spread_and_paired_ratio():
    assert spread([100.0, 110.0, 105.0]) == 110.0 / 100.0 - 1.0
    assert paired_ratio([99.0, 50.0, 120.0], [100.0, 50.0, 100.0]) == 1.0


def test_paired_ci_holds_the_median_pair_ratio_and_narrows_with_repeats():
    rng = np.random.default_rng(1)
    widths = []
    for n in (6, 96):
        base = list(100.0 * np.exp(rng.normal(0, 0.1, n)))  # drift shared by the pair
        values = [b * 0.98 * np.exp(rng.normal(0, 0.02)) for b in base]
        median, low, high = paired_ci(values, base)
        assert low <= median <= high
        assert low < 0.98 < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2
    assert paired_ci([1.0], [2.0]) == (0.5, 0.5, 0.5)
