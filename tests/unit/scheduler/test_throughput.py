"""The shared formulas against independent brute-force computations."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rollspec.scheduler import best_depth, expected_tokens, sample_num_accepted, step_time_s, tokens_per_s

alphas_st = st.lists(st.floats(0.0, 1.0), min_size=0, max_size=8)


def _expected_by_distribution(alphas, k):
    """E[tokens] = sum_n (n + 1) P(N = n), with P(N = n) = prod_{i<=n} a_i * (1 - a_{n+1}) and P(N = k) = prod a_i."""
    total, reach = 0.0, 1.0
    for n in range(k + 1):
        p_stop = 1.0 if n == k else 1.0 - alphas[n]
        total += (n + 1) * reach * p_stop
        if n < k:
            reach *= alphas[n]
    return total


@given(alphas_st)
def test_expected_tokens_matches_the_distribution_of_accepted_lengths(alphas):
    got = expected_tokens(alphas)
    assert got.shape == (len(alphas) + 1,)
    for k in range(len(alphas) + 1):
        assert abs(got[k] - _expected_by_distribution(alphas, k)) < 1e-9


def test_expected_tokens_matches_sampled_acceptance():
    rng = np.random.default_rng(0)
    alphas = [0.9, 0.7, 0.5, 0.8]
    num_accepted = sample_num_accepted(rng, alphas, 4, 200_000)
    assert abs(num_accepted.mean() + 1 - expected_tokens(alphas)[4]) < 0.01


@given(
    alphas_st.filter(lambda a: len(a) >= 1),
    st.floats(0.0, 5e-3),
    st.floats(1e-3, 1e-2),
    st.lists(st.floats(0.0, 2e-3), min_size=8, max_size=8),
)
@settings(max_examples=300)
def test_best_depth_matches_a_brute_force_oracle(alphas, draft_s, target_floor_s, increments):
    k_max = len(alphas)
    target = target_floor_s + np.concatenate([[0.0], np.cumsum(increments[:k_max])])
    rates = []
    for k in range(k_max + 1):
        tokens = 1.0 + sum(np.prod(alphas[: j + 1]) for j in range(k))
        rates.append(tokens / (k * draft_s + target[k]))
    chosen = best_depth(alphas, draft_s, target)
    # Equal up to rounding when several depths tie; otherwise the oracle's unique best.
    assert rates[chosen] >= max(rates) * (1 - 1e-12)
    assert all(r < rates[chosen] * (1 + 1e-12) for r in rates[:chosen])
    assert np.allclose(tokens_per_s(7, alphas, draft_s, target), 7 * np.array(rates))


def test_step_time_adds_one_draft_per_position():
    assert np.allclose(step_time_s(0.5, [1.0, 2.0, 4.0]), [1.0, 2.5, 5.0])


def test_best_depth_is_zero_when_drafting_costs_more_than_it_can_return():
    # Even perfect acceptance doubles tokens at k = 1 while the step more than doubles.
    assert best_depth([1.0] * 8, 2e-3, [1e-3 + 1.1e-3 * q for q in range(9)]) == 0
