"""Per-position acceptance estimator: what it counts, how fast it forgets, what it does with untried positions."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rollspec.scheduler import AcceptanceConfig, AcceptanceEstimator, expected_tokens, sample_num_accepted

TINY_PRIOR = AcceptanceConfig(half_life_steps=1e9, prior_alpha=0.5, prior_weight=1e-9)


def test_counts_only_rows_that_reached_a_position():
    est = AcceptanceEstimator(4, TINY_PRIOR)
    # Rows accepting 0, 0, 3, 1 of 3 drafted tokens: position 1 tried by 4 rows (2 accepted),
    # position 2 by the 2 rows that passed 1 (1 accepted), position 3 by 1 row (accepted);
    # position 4 never.
    est.observe(3, [0, 0, 3, 1])
    assert np.allclose(est.alphas, [0.5, 0.5, 1.0, 0.5])
    assert np.allclose(est.evidence, [4, 2, 1, 0])


def test_zero_depth_step_only_advances_the_clock():
    est = AcceptanceEstimator(3, AcceptanceConfig())
    est.observe(0, [0, 0])
    assert est.num_steps == 1 and np.allclose(est.alphas, AcceptanceConfig().prior_alpha)


@given(st.lists(st.floats(0.05, 0.95), min_size=1, max_size=6), st.integers(0, 2**32 - 1))
@settings(max_examples=30, deadline=None)
def test_converges_to_the_true_conditional_rates(alphas, seed):
    rng = np.random.default_rng(seed)
    k = len(alphas)
    est = AcceptanceEstimator(k, AcceptanceConfig())
    for _ in range(60):
        est.observe(k, sample_num_accepted(rng, alphas, k, 256))
    reached = np.cumprod([1.0] + alphas[:-1])
    # Effective rows per position: about 256 * 23 * P(reach j); allow 5 standard errors.
    attempts = 256 * 23 * reached
    tolerance = 5 * np.sqrt(np.array(alphas) * (1 - np.array(alphas)) / attempts) + 5 / attempts
    assert np.all(np.abs(est.alphas - alphas) <= tolerance), (est.alphas, alphas)


def test_pooled_estimate_gives_the_expected_tokens_of_a_mixed_batch():
    rng = np.random.default_rng(1)
    easy, hard = [0.95, 0.9, 0.9, 0.85], [0.4, 0.3, 0.2, 0.2]
    est = AcceptanceEstimator(4, TINY_PRIOR)
    observed = []
    for _ in range(200):
        rows = np.concatenate([sample_num_accepted(rng, easy, 4, 48), sample_num_accepted(rng, hard, 4, 16)])
        est.observe(4, rows)
        observed.append(rows.mean() + 1)
    truth = 0.75 * expected_tokens(easy)[4] + 0.25 * expected_tokens(hard)[4]
    assert abs(expected_tokens(est.alphas)[4] - truth) < 0.03
    assert abs(np.mean(observed) - truth) < 0.03


def test_tracks_an_abrupt_drop_at_the_configured_half_life():
    rng = np.random.default_rng(2)
    half_life = 8
    est = AcceptanceEstimator(2, AcceptanceConfig(half_life_steps=half_life))
    for _ in range(100):
        est.observe(2, sample_num_accepted(rng, [0.9, 0.9], 2, 128))
    for step in range(1, 4 * half_life + 1):
        est.observe(2, sample_num_accepted(rng, [0.3, 0.3], 2, 128))
        if step % half_life == 0:
            remaining = (0.9 - est.alphas[0]) / (0.9 - 0.3)
            assert abs((1 - remaining) - 0.5 ** (step / half_life)) < 0.05, (step, est.alphas)


def test_an_untried_position_keeps_its_last_estimate_and_an_unseen_one_reads_the_prior():
    rng = np.random.default_rng(3)
    est = AcceptanceEstimator(3, AcceptanceConfig(prior_alpha=0.6))
    for _ in range(50):
        est.observe(2, sample_num_accepted(rng, [0.9, 0.2], 2, 64))
    before = est.alphas.copy()
    for _ in range(500):
        est.observe(1, sample_num_accepted(rng, [0.9], 1, 64))
    assert abs(est.alphas[1] - before[1]) < 1e-12  # no drift back towards the prior
    assert est.alphas[2] == 0.6
    # Fresh evidence after a long gap dominates the aged one at once.
    est.observe(2, np.full(64, 2))
    assert est.alphas[1] > 0.95


def test_discount_keeps_the_means_and_lets_new_evidence_weigh_more():
    rng = np.random.default_rng(4)
    slow = AcceptanceEstimator(1, AcceptanceConfig(half_life_steps=1e9))
    for _ in range(50):
        slow.observe(1, sample_num_accepted(rng, [0.5], 1, 32))
    fast = AcceptanceEstimator(1, AcceptanceConfig(half_life_steps=1e9))
    for _ in range(50):
        fast.observe(1, sample_num_accepted(rng, [0.5], 1, 32))
    mean_before = fast.alphas[0]
    fast.discount(0.1)
    assert abs(fast.alphas[0] - mean_before) < 0.01
    slow.observe(1, np.ones(32, dtype=int))
    fast.observe(1, np.ones(32, dtype=int))
    assert fast.alphas[0] - mean_before > 3 * (slow.alphas[0] - mean_before) > 0
