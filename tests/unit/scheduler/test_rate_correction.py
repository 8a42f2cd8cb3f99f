"""Per-depth correction of predicted tokens/s by realized step times: its arithmetic, and in closed loop a model
that flatters speculation and does not learn."""

import math

import numpy as np
import pytest

from rollspec.scheduler import (
    DepthConfig,
    DepthScheduler,
    RateCorrection,
    RateCorrectionConfig,
    expected_tokens,
)

K_MAX = 8
CONFIG = RateCorrectionConfig(rate=1.0 / 32.0, min_steps=4, deadband=0.0, max_log_factor=1.0)


def _feed(rates, k, model_s, realized_s, steps=8, batch_size=1):
    for _ in range(steps):
        rates.observe(batch_size, k, model_s, model_s, realized_s)


def test_no_correction_before_min_steps_and_the_measured_one_after():
    rates = RateCorrection(K_MAX, CONFIG)
    model_s = np.linspace(1.0, 3.0, K_MAX + 1) * 1e-3
    _feed(rates, 3, model_s, 2 * model_s[3], steps=CONFIG.min_steps - 1)
    assert np.all(rates.factors(1, model_s) == 1.0)
    _feed(rates, 3, model_s, 2 * model_s[3], steps=1)
    assert rates.factors(1, model_s)[3] == pytest.approx(0.5)
    assert rates.factors(1, model_s)[0] == 1.0  # plain decoding is the realized check's business
    assert np.all(rates.factors(64, model_s) == 1.0)  # another bucket learns on its own


def test_depths_between_run_ones_interpolate_and_outside_borrow_the_miss_in_seconds():
    rates = RateCorrection(K_MAX, CONFIG)
    model_s = np.arange(1, K_MAX + 2) * 1e-3  # k ms + 1 ms
    _feed(rates, 2, model_s, model_s[2] + 1e-3)  # 1 ms slower than the model
    _feed(rates, 6, model_s, model_s[6] + 1e-3)
    log = np.log(rates.factors(1, model_s))
    at_2, at_6 = math.log(3 / 4), math.log(7 / 8)
    assert log[4] == pytest.approx((at_2 + at_6) / 2)
    # Outside the run depths the same 1 ms is lent, not the factor: k = 8 is 9 ms + 1 ms, k = 1 is 2 + 1.
    assert log[8] == pytest.approx(math.log(9 / 10))
    assert log[1] == pytest.approx(math.log(2 / 3))


def test_misses_within_the_deadband_do_not_move_the_ranking():
    rates = RateCorrection(K_MAX, RateCorrectionConfig(min_steps=4, deadband=0.05))
    model_s = np.full(K_MAX + 1, 2e-3)
    _feed(rates, 4, model_s, model_s[4] * 1.03)
    assert rates.factors(1, model_s)[4] == 1.0
    _feed(rates, 5, model_s, model_s[5] * 1.25, steps=64)
    assert rates.factors(1, model_s)[5] == pytest.approx(math.exp(-(math.log(1.25) - 0.05)))


def test_a_depths_miss_follows_the_model_when_the_model_moves():
    # k = 8 measured at 4 ms while the model said 2 ms; later the model learns elsewhere and says 3 ms for
    # k = 8: the correction must now bring 3 ms to 4 ms, not 2 ms to 4 ms.
    rates = RateCorrection(K_MAX, CONFIG)
    before = np.full(K_MAX + 1, 2e-3)
    _feed(rates, 8, before, 4e-3)
    after = before.copy()
    after[8] = 3e-3
    rates.observe(1, 3, before, after, realized_s=2e-3)
    assert rates.factors(1, after)[8] == pytest.approx(3 / 4)


def _mispredicted(synthetic, correct_rates, seed=0):
    """A cost model that has all but stopped learning, on a device where verify and drafting are far dearer than
    profiled (every k > 0 is ~0.6-0.8 of plain), with the realized check off: only this rule can see it."""
    from rollspec.scheduler import CostConfig, CostModel
    profiled = synthetic.LinearDevice()
    true = synthetic.LinearDevice(target_per_token_s=1.2e-4, draft_fixed_s=2e-3, draft_per_row_s=1e-4)
    target, draft = profiled.profile(k_max=K_MAX)
    frozen = CostModel.from_profile(target, draft, CostConfig(correction_rate=1e-4))
    config = DepthConfig(check_realized=False, correct_rates=correct_rates)
    scheduler = DepthScheduler(config, frozen)
    decisions = synthetic.run_steps(scheduler, true, alphas=[0.8] * K_MAX, batch_size=16, num_steps=400,
                                    rng=np.random.default_rng(seed), time_noise=0.1)
    expected = expected_tokens([0.8] * K_MAX)
    rates = np.array([expected[k] / true.step_s(16, k) for k in range(K_MAX + 1)])
    assert rates[1:].max() < 0.85 * rates[0]  # the setting
    return np.mean([rates[d.k] for d in decisions[100:]]) / rates[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_speculation_the_model_flatters_is_ranked_by_what_it_realized(synthetic, seed):
    assert _mispredicted(synthetic, correct_rates=True, seed=seed) >= 0.97


def test_without_the_correction_the_same_model_keeps_speculating(synthetic):
    assert _mispredicted(synthetic, correct_rates=False) < 0.9
