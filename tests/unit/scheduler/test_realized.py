"""The realized check: speculation whose steps keep taking longer than predicted is stopped where it loses,
plain steps keep the comparison measured at a bounded cost, and a correct model is left alone."""

import math

import numpy as np

from rollspec.scheduler import CostConfig, DepthConfig, DepthScheduler, RealizedCheck, RealizedConfig

K_MAX, B, ALPHA = 8, 16, 0.8
# A cost model that has all but stopped learning (a profile taken under load and trusted).
FROZEN = CostConfig(correction_rate=1e-4)


def _frozen_model(device):
    from rollspec.scheduler import CostModel
    target, draft = device.profile(k_max=K_MAX)
    return CostModel.from_profile(target, draft, FROZEN)


def _true_ratio_vs_plain(device, decisions):
    tokens = sum(B * float(1 + sum(ALPHA ** j for j in range(1, d.k + 1))) for d in decisions)
    seconds = sum(device.step_s(B, d.k) for d in decisions)
    return tokens / seconds / (B / device.step_s(B, 0))


def _run(synthetic, check_realized, seed=0):
    profiled = synthetic.LinearDevice()
    # Verify and drafting far dearer than profiled: every k > 0 loses to plain decoding (~0.6-0.8 of it).
    true = synthetic.LinearDevice(target_per_token_s=1.2e-4, draft_fixed_s=2e-3, draft_per_row_s=1e-4)
    scheduler = DepthScheduler(DepthConfig(check_realized=check_realized), _frozen_model(profiled))
    decisions = synthetic.run_steps(scheduler, true, alphas=[ALPHA] * K_MAX, batch_size=B, num_steps=600,
                                    rng=np.random.default_rng(seed), time_noise=0.1)
    return true, scheduler, decisions


def test_mispredicted_speculation_is_stopped_by_realized_times(synthetic):
    true, scheduler, decisions = _run(synthetic, check_realized=True)
    assert max(true.true_rates(B, [ALPHA] * K_MAX, K_MAX)[1:]) < 0.85 * B / true.step_s(B, 0)  # the setting
    assert _true_ratio_vs_plain(true, decisions[100:]) >= 0.97
    assert scheduler.stats.num_vetoes > 0


def test_without_the_check_the_same_model_keeps_losing(synthetic):
    true, scheduler, decisions = _run(synthetic, check_realized=False)
    assert _true_ratio_vs_plain(true, decisions[100:]) < 0.9


def test_plain_checks_are_few_where_speculation_pays(synthetic):
    device = synthetic.LinearDevice()
    config = DepthConfig()
    scheduler = DepthScheduler(config, device.cost_model())
    num_steps = 2000
    decisions = synthetic.run_steps(scheduler, device, alphas=[0.85] * K_MAX, batch_size=4, num_steps=num_steps,
                                    rng=np.random.default_rng(3), time_noise=0.1)
    checks = sum(d.is_check for d in decisions)
    assert 1 <= checks <= config.realized.min_steps + num_steps / config.realized.plain_check_interval_steps
    assert scheduler.stats.num_vetoes == 0  # a model that is right is never overruled
    assert all(d.k > 0 for d in decisions[200:] if not d.is_check)


def test_verdict_needs_evidence_on_both_sides_and_a_gap_beyond_noise():
    config = RealizedConfig(min_steps=4, z=3.0)
    check = RealizedCheck(config)
    for step in range(3):
        check.observe(step, 8, 0, 1.0, 1.0)  # plain steps as predicted
        check.observe(step, 8, 2, 2.0, 1.0)  # speculative steps twice as long as predicted
    assert not check.is_losing(8, 3, 1.5, 1.0)  # three of each: not yet judged
    check.observe(3, 8, 0, 1.0, 1.0)
    check.observe(3, 8, 2, 2.0, 1.0)
    assert check.is_losing(8, 4, 1.5, 1.0)  # predicted 1.5x plain, realized at half speed: 0.75x
    assert not check.is_losing(8, 4, 2.5, 1.0)  # predicted 2.5x: still 1.25x after the miss
    assert not check.is_losing(300, 4, 1.5, 1.0)  # another bucket has no evidence
    # Noisy misses of the same mean are not a verdict.
    noisy = RealizedCheck(config)
    for step in range(8):
        noisy.observe(step, 8, 0, math.exp(0.6 * (-1) ** step), 1.0)
        noisy.observe(step, 8, 2, math.exp(0.6 * (-1) ** step) * 1.2, 1.0)
    assert not noisy.is_losing(8, 8, 1.1, 1.0)


def test_old_speculative_evidence_is_dropped():
    check = RealizedCheck(RealizedConfig(min_steps=2, veto_steps=100))
    for step in range(4):
        check.observe(step, 8, 0, 1.0, 1.0)
        check.observe(step, 8, 3, 3.0, 1.0)
    assert check.is_losing(8, 50, 1.5, 1.0)
    assert not check.is_losing(8, 200, 1.5, 1.0)


def test_a_veto_stands_like_a_plain_choice(synthetic):
    # The setting of _run: every k > 0 loses, the frozen model keeps choosing one, the check keeps vetoing it.
    profiled = synthetic.LinearDevice()
    true = synthetic.LinearDevice(target_per_token_s=1.2e-4, draft_fixed_s=2e-3, draft_per_row_s=1e-4)
    costs = synthetic.CountingCosts(_frozen_model(profiled))
    scheduler = DepthScheduler(DepthConfig(), costs)
    rng = np.random.default_rng(0)
    synthetic.run_steps(scheduler, true, alphas=[ALPHA] * K_MAX, batch_size=B, num_steps=200, rng=rng, time_noise=0.1)
    vetoes, calls = scheduler.stats.num_vetoes, costs.num_step_s
    decisions = synthetic.run_steps(scheduler, true, alphas=[ALPHA] * K_MAX, batch_size=B, num_steps=400, rng=rng,
                                    time_noise=0.1)
    assert vetoes > 0 and scheduler.stats.num_vetoes > vetoes  # the verdict holds and is renewed
    assert _true_ratio_vs_plain(true, decisions) >= 0.97
    # A plan per vetoed step priced every depth at every step; a standing veto plans once per stand.
    assert costs.num_step_s - calls <= 400 // DepthConfig().replan_interval_steps, costs.num_step_s - calls


def test_plain_checks_come_rarer_only_where_speculation_clearly_wins(synthetic):
    # At B = 1 on the zoo (k = 4, ~1.2x plain) a check cost ~1 ms of scheduler work and a plain step per 64 steps.
    device, config, num_steps = synthetic.LinearDevice(), DepthConfig(), 3000
    interval = config.realized.plain_check_interval_steps

    def checks(alpha):
        scheduler = DepthScheduler(config, device.cost_model())
        decisions = synthetic.run_steps(scheduler, device, alphas=[alpha] * K_MAX, batch_size=4, num_steps=num_steps,
                                        rng=np.random.default_rng(3), time_noise=0.1)
        assert scheduler.stats.num_vetoes == 0
        return sum(d.is_check for d in decisions)

    assert device.true_rates(4, [0.85] * K_MAX, K_MAX).max() > 2 * device.true_rates(4, [0.85] * K_MAX, K_MAX)[0]
    assert checks(0.85) <= config.realized.min_steps + num_steps / (4 * interval) + 3  # 52 every interval
    best = device.true_rates(4, [0.3] * K_MAX, K_MAX)
    assert best.max() < 1.2 * best[0]  # a narrow win: every interval, as before
    assert checks(0.3) >= 0.75 * num_steps / interval
