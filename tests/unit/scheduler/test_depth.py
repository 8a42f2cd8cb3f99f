"""Depth choice: the oracle's k, zero when nothing pays, hysteresis, fixed mode, records, hot-path cost."""

import timeit

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollspec.scheduler import DepthConfig, DepthMode, DepthScheduler, expected_tokens, sample_num_accepted
from rollspec.scheduler.neighbour import TRIAL_STEPS as NEIGHBOUR_TRIAL_STEPS
from rollspec.scheduler.probe import TRIAL_STEPS

device_st = st.fixed_dictionaries({
    "target_fixed_s": st.floats(1e-3, 1e-2),
    "target_per_token_s": st.floats(0.0, 1e-4),
    "draft_fixed_s": st.floats(0.0, 2e-3),
    "draft_per_row_s": st.floats(0.0, 2e-5),
    "draft_step_s": st.floats(0.0, 3e-3),
})
alphas_st = st.lists(st.floats(0.0, 1.0), min_size=8, max_size=8)


def _oracle(scheduler, batch_size):
    """Brute force over k with the scheduler's own estimates, in plain Python."""
    alphas, model = scheduler.planning_alphas(), scheduler.cost_model
    rates = []
    for k in range(scheduler.config.k_max + 1):
        tokens = 1.0 + sum(float(np.prod(alphas[: j + 1])) for j in range(k))
        rates.append(batch_size * tokens / (model.drafting_s(batch_size, k) + model.target_s(batch_size, k + 1)))
    return rates


@given(device_st, alphas_st, st.integers(1, 8), st.integers(1, 300), st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_picks_the_brute_force_optimum_of_its_estimates(synthetic, device_kw, alphas, k_max, batch_size, seed):
    device = synthetic.LinearDevice(**device_kw)
    scheduler = DepthScheduler(DepthConfig(k_max=k_max, hysteresis=0.0, start_gain=0.0),
                               device.cost_model(k_max=k_max))
    rng = np.random.default_rng(seed)
    for _ in range(5):  # every position observed recently, so no probe can fire
        scheduler.observe(32, k_max, sample_num_accepted(rng, alphas, k_max, 32), 1e-3, 5e-3)
    rates = _oracle(scheduler, batch_size)
    assert scheduler.choose_depth(batch_size) == int(np.argmax(rates))


@given(device_st, alphas_st, st.integers(1, 64), st.integers(0, 2**32 - 1))
@settings(max_examples=30, deadline=None)
def test_settles_on_the_true_optimum(synthetic, device_kw, alphas, batch_size, seed):
    device = synthetic.LinearDevice(**device_kw)
    # start_gain off: the synthetic device has no drafter catch-up cost for it to pay for
    scheduler = DepthScheduler(DepthConfig(start_gain=0.0), device.cost_model())
    decisions = synthetic.run_steps(scheduler, device, alphas=alphas, batch_size=batch_size, num_steps=600,
                                    rng=np.random.default_rng(seed))
    true = device.true_rates(batch_size, alphas, 8)
    # Averaged over a few probe intervals: one unlucky probe near break-even may cost an interval,
    # and at batch size 1 a position rows rarely reach rests on a handful of observations.
    assert np.mean([true[d.k] for d in decisions[200:]]) >= 0.90 * true.max()
    if true.max() > 1.10 * np.sort(true)[-2]:  # a clear optimum is where it settles
        settled = [d.k for d in decisions[400:] if not d.is_probe]
        assert settled.count(int(np.argmax(true))) >= 0.8 * len(settled), (settled, true)


@given(st.floats(1e-4, 1e-2), st.floats(0.0, 1e-4), st.floats(1.3, 3.0), st.integers(1, 512),
       st.integers(0, 2**32 - 1))
@settings(max_examples=50, deadline=None)
def test_never_speculates_when_even_perfect_acceptance_does_not_pay(synthetic, fixed_s, per_token_s, draft_ratio,
                                                                      batch_size, seed):
    # Drafting one position costs more than a whole plain step: no depth can pay.
    draft_s = draft_ratio * (fixed_s + per_token_s * batch_size)
    device = synthetic.LinearDevice(target_fixed_s=fixed_s, target_per_token_s=per_token_s, draft_fixed_s=draft_s)
    scheduler = DepthScheduler(DepthConfig(), device.cost_model())
    step_s = scheduler.cost_model.step_s(batch_size, 8)
    assert np.all(np.arange(2, 10) / step_s[1:] <= 0.9 / step_s[0])  # loses by 10% at least
    rng = np.random.default_rng(seed)
    decisions = synthetic.run_steps(scheduler, device, alphas=[1.0] * 8, batch_size=batch_size, num_steps=200,
                                    rng=rng, time_noise=0.05)
    assert [d.k for d in decisions] == [0] * 200
    assert scheduler.stats.num_probes == 0


def test_choices_respect_the_hysteresis_rule(synthetic):
    device = synthetic.LinearDevice()
    h = 0.05
    # Planned every step: the rule is checked against the rates of the step's own plan.
    scheduler = DepthScheduler(DepthConfig(hysteresis=h, replan_interval_steps=1, max_replan_interval_steps=1),
                               device.cost_model())
    rng = np.random.default_rng(0)
    previous = 0
    num_switches = trial_k = trial_left = neighbour_k = neighbour_left = 0
    for i in range(1500):
        b = 1 + (i // 100) % 32
        alpha = [0.5 + 0.4 * np.sin(i / 150)] * 8
        rates = scheduler.predicted_tokens_per_s(b)
        before = scheduler.stats
        k = scheduler.choose_depth(b)
        scheduler.observe(b, k, sample_num_accepted(rng, alpha, k, b), k * device.draft_s(b), device.target_s(b, k + 1))
        in_trial = not scheduler.last_decision.is_probe and trial_left > 0 and k == trial_k
        trial_left = TRIAL_STEPS - 1 if scheduler.last_decision.is_probe else trial_left - 1 if in_trial else 0
        trial_k = k if scheduler.last_decision.is_probe else trial_k  # from plain a probe's trial follows at its k
        after = scheduler.stats  # plain, or k's neighbours, overruled by realized tokens/s, or a neighbour's trial
        tried = after.num_neighbour_trials > before.num_neighbour_trials
        in_neighbour_trial = tried or neighbour_left > 0 and k == neighbour_k
        neighbour_left = NEIGHBOUR_TRIAL_STEPS - 1 if tried else neighbour_left - 1 if in_neighbour_trial else 0
        neighbour_k = k if tried else neighbour_k
        measured = (after.num_measured_starts, after.num_neighbour_switches) != (
            before.num_measured_starts, before.num_neighbour_switches) or in_neighbour_trial
        if scheduler.last_decision.is_probe or scheduler.last_decision.is_check or in_trial or measured:
            previous = None  # the greedy choice behind a probe or check is not visible; skip the next comparison
            continue
        # Plain decoding is left only for a gain beyond start_gain (a probe, or a plain check, may sit between).
        assert rates[k] >= rates.max() / (1 + (scheduler.config.start_gain if k == 0 else h)) - 1e-12
        assert rates[k] >= rates[0]
        if previous is not None and k != previous:
            num_switches += 1
            assert rates[k] > rates[previous] * (1 + h) or rates[previous] < rates[0]
        previous = k
    assert num_switches >= 5  # the rule was exercised, not vacuous


def test_fixed_mode_always_drafts_k_max(synthetic):
    device = synthetic.LinearDevice(target_per_token_s=1e-3)  # speculation never pays here
    scheduler = DepthScheduler(DepthConfig(k_max=3, mode=DepthMode.FIXED), device.cost_model())
    decisions = synthetic.run_steps(scheduler, device, alphas=[0.0] * 3, batch_size=256, num_steps=20,
                                    rng=np.random.default_rng(0))
    assert {d.k for d in decisions} == {3}
    assert scheduler.stats.num_steps_by_k == [0, 0, 0, 20]


def test_zero_k_max_is_plain_decoding(synthetic):
    scheduler = DepthScheduler(DepthConfig(k_max=0), synthetic.LinearDevice().cost_model(k_max=0))
    assert scheduler.choose_depth(1) == 0


def test_records_predicted_and_realized_numbers(synthetic):
    device = synthetic.LinearDevice()
    scheduler = DepthScheduler(DepthConfig(history_len=5), device.cost_model())
    assert scheduler.last_decision is None
    for _ in range(10):
        scheduler.observe(4, 2, [0, 1, 2, 2], 2e-4, 3e-3)
    # A step is recorded with the plan it was chosen on: plan now (the choice itself is not used).
    scheduler.choose_depth(100)
    expected_before = 4 * expected_tokens(scheduler.planning_alphas())[3]
    predicted_s = scheduler.cost_model.step_s(4, 3)[3]
    scheduler.observe(4, 3, [3, 0, 1, 2], 6e-4, 3.2e-3)
    decision = scheduler.last_decision
    assert (decision.step, decision.batch_size, decision.k, decision.is_probe) == (10, 4, 3, False)
    assert decision.predicted_tokens == pytest.approx(expected_before)
    assert decision.predicted_step_s == pytest.approx(predicted_s)
    assert decision.realized_tokens == 10 and decision.realized_step_s == pytest.approx(3.8e-3)
    assert decision.realized_tokens_per_s == pytest.approx(10 / 3.8e-3)
    assert decision.as_metrics()["k"] == 3
    assert [d.step for d in scheduler.history] == [6, 7, 8, 9, 10]
    stats = scheduler.stats
    assert stats.num_steps == 11 and stats.num_steps_by_k[2] == 10 and stats.num_steps_by_k[3] == 1
    assert stats.num_tokens == 10 * 9 + 10 and stats.num_drafted == 10 * 8 + 12
    assert stats.mean_accepted_length == pytest.approx(100 / 44)


def test_a_weight_change_triggers_a_probe_deeper(synthetic):
    device = synthetic.LinearDevice()
    # Choices re-planned every 4 steps: with longer ones this trace settles at k = 2 (k = 1 and 2 are within 1% here),
    # where no deeper depth could pay even at perfect acceptance, so there is nothing to probe.
    scheduler = DepthScheduler(DepthConfig(max_replan_interval_steps=4), device.cost_model())
    synthetic.run_steps(scheduler, device, alphas=[0.6, 0.3] + [0.2] * 6, batch_size=4, num_steps=300,
                        rng=np.random.default_rng(0))
    for _ in range(scheduler.config.k_max + 1):  # finish any probe sweep in progress
        k = scheduler.choose_depth(4)
        scheduler.observe(4, k, [0] * 4, k * device.draft_s(4), device.target_s(4, k + 1))
        if not scheduler.last_decision.is_probe:
            break
    assert not scheduler.last_decision.is_probe
    assert scheduler.choose_depth(4) == k  # nothing overdue right after a sweep
    scheduler.observe(4, k, [0] * 4, k * device.draft_s(4), device.target_s(4, k + 1))
    scheduler.notify_weights_changed()
    assert scheduler.choose_depth(4) > k


def test_choose_depth_is_cheap():
    from rollspec.scheduler import CostModel

    target = {(b, q): 3e-3 + 1e-5 * b * q for b in (1, 8, 64, 256) for q in (1, 2, 5, 9)}
    scheduler = DepthScheduler(DepthConfig(k_max=8), CostModel.from_profile(target, {1: 3e-4, 256: 1e-3}))
    scheduler.observe(37, 8, [3] * 37, 1e-3, 5e-3)
    per_call_s = min(timeit.repeat(lambda: scheduler.choose_depth(37), number=500, repeat=5)) / 500
    assert per_call_s < 100e-6, per_call_s


def test_no_probe_where_even_perfect_acceptance_gains_under_the_margin():
    from rollspec.scheduler import CostModel

    # A large batch on a compute-bound device: verifying q tokens costs 0.95 q plain steps, so
    # k = 1 with every draft accepted would be ~5% faster, below probe_min_gain (10%).
    target = {(b, q): 8e-3 * (1 + 0.95 * (q - 1)) * b / 64 for b in (1, 64) for q in (1, 2, 3, 5, 9)}
    cost = CostModel.from_profile(target, {1: 1e-5, 64: 1e-5})
    margined = DepthScheduler(DepthConfig(k_max=8), cost)
    eager = DepthScheduler(DepthConfig(k_max=8, probe_min_gain=0.0), cost)
    for scheduler in (margined, eager):
        for _ in range(300):
            k = scheduler.choose_depth(64)
            scheduler.observe(64, k, [k] * 64, k * 1e-5, target[(64, 1)] * (1 + 0.95 * k))
    assert margined.stats.num_steps_by_k[0] == 300
    assert eager.stats.num_steps_by_k[0] < 300  # the same inputs without the margin do probe


# The start gain is a margin for what the catch-up model misses: with nothing to catch up, hysteresis is the margin.
@pytest.mark.parametrize(("gain", "catch_up", "leaves_plain"), [(0.10, 3, False), (0.30, 3, True), (0.10, 0, True)])
def test_leaves_plain_decoding_only_for_more_than_the_start_gain(gain, catch_up, leaves_plain):
    from rollspec.scheduler import CatchUpCost, CostModel

    # k = 1 emits 1 + alpha = 1.9 tokens per row; its step cost is set so it is `gain` faster than k = 0.
    plain_s = 1e-2
    verify_s = 1.9 * plain_s / (1 + gain)
    target = {(b, q): plain_s if q == 1 else verify_s * (1 + 0.01 * (q - 2)) for b in (1, 64) for q in (1, 2, 3, 5, 9)}
    cost = CostModel.from_profile(target, {1: 1e-9, 64: 1e-9})
    scheduler = DepthScheduler(DepthConfig(k_max=1, start_gain=0.15), cost, CatchUpCost({1: 1e-12}))  # ~free
    for _ in range(20):  # acceptance 0.9 well established; the greedy depth is still the initial 0
        scheduler.observe(64, 1, [1] * 58 + [0] * 6, 1e-9, verify_s)
    assert (scheduler.choose_depth(64, catch_up) == 1) is leaves_plain


def test_unexplored_deeper_positions_are_planned_at_the_deepest_observed_acceptance(synthetic):
    # Positions 1-3 observed at ~0.9; 4-8 never. At the 0.6 prior a depth beyond 3 would not pay on
    # this device; at 0.9 depth 8 does, so the scheduler goes deeper and finds out.
    device = synthetic.LinearDevice(target_fixed_s=5e-3, target_per_token_s=2e-4, draft_fixed_s=8e-4)
    scheduler = DepthScheduler(DepthConfig(hysteresis=0.0, start_gain=0.0), device.cost_model())
    rng = np.random.default_rng(0)
    for _ in range(40):
        scheduler.observe(1, 3, sample_num_accepted(rng, [0.9] * 3, 3, 1), 3 * 8e-4, 5.8e-3)
    planned = scheduler.planning_alphas()
    assert planned[3:] == pytest.approx([planned[2]] * 5) and planned[2] > 0.7
    prior_only = np.concatenate([planned[:3], [0.6] * 5])
    rates = [1 * expected_tokens(a)[:9] / scheduler.cost_model.step_s(1, 8) for a in (planned, prior_only)]
    assert int(np.argmax(rates[1])) <= 3 < int(np.argmax(rates[0]))  # the rule is what makes depth > 3 win
    assert scheduler.choose_depth(1) > 3


@pytest.mark.parametrize("interval", [1, 4])
def test_a_choice_is_replanned_every_interval_and_whenever_the_batch_size_changes(synthetic, interval):
    device = synthetic.LinearDevice()
    costs = synthetic.CountingCosts(device.cost_model())
    config = DepthConfig(replan_interval_steps=interval, max_replan_interval_steps=interval, check_realized=False,
                         probe_interval_steps=10**6, explore_budget=0.0)
    scheduler = DepthScheduler(config, costs)
    rng = np.random.default_rng(0)
    planned = []
    for step in range(200):
        b = 4 if step < 101 else 5
        before = costs.num_step_s
        k = scheduler.choose_depth(b, 1)
        planned.append(costs.num_step_s > before)
        scheduler.observe(b, k, sample_num_accepted(rng, [0.85] * 8, k, b), k * device.draft_s(b), device.target_s(b, k + 1))
    assert 200 / interval <= sum(planned) <= 200 / interval + 2
    assert planned[101]  # a new batch size is planned for at once (101 is not a multiple of 4)


def _plans(synthetic, alphas, config, num_steps=400, b=4):
    """Steps at which the scheduler planned (read its cost model), driven on the synthetic device."""
    device = synthetic.LinearDevice()
    costs = synthetic.CountingCosts(device.cost_model())
    scheduler = DepthScheduler(config, costs)
    rng, planned, ks = np.random.default_rng(0), [], []
    for step in range(num_steps):
        before = costs.num_step_s
        k = scheduler.choose_depth(b, 1)
        planned.append(costs.num_step_s > before)
        ks.append(k)
        alpha = alphas(step) if callable(alphas) else alphas
        scheduler.observe(b, k, sample_num_accepted(rng, alpha, k, b), k * device.draft_s(b), device.target_s(b, k + 1))
    return np.flatnonzero(planned), ks


def test_a_confirmed_speculative_choice_stands_longer_and_an_acceptance_drop_ends_it(synthetic):
    config = DepthConfig(check_realized=False, probe_interval_steps=10**6)
    steps, ks = _plans(synthetic, [0.85] * 8, config)
    gaps, longest = np.diff(steps[steps > 100]), config.max_replan_interval_steps
    assert ks[100:].count(0) == 0 and set(gaps) <= set(range(1, longest + 1)) and np.median(gaps) == longest, gaps
    # From step 300 the drafts are all rejected: the standing choice ends within SHORTFALL_STEPS steps, not 32.
    steps, ks = _plans(synthetic, lambda i: [0.85 if i < 300 else 0.0] * 8, config)
    assert steps[steps >= 300][0] <= 300 + 4
    assert ks[-50:] == [0] * 50


def _speculating(settle_steps):
    from rollspec.scheduler import CostModel
    target = {(b, q): 1e-3 + 1e-4 * b * q for b in (1, 64) for q in (1, 2, 5, 9)}
    scheduler = DepthScheduler(DepthConfig(settle_steps=settle_steps), CostModel.from_profile(target, {1: 1e-4}))
    for _ in range(20):
        scheduler.observe(1, 4, [4], 4e-4, scheduler.cost_model.target_s(1, 5))
    return scheduler


@pytest.mark.parametrize("settle_steps", [0, 4])
def test_plain_steps_right_after_speculation_do_not_price_plain_decoding(settle_steps):
    # On the zoo the first plain steps after verify steps ran 1.2-1.6x a plain step in a run of them.
    scheduler = _speculating(settle_steps)
    plain_s = scheduler.cost_model.target_s(1, 1)
    for _ in range(settle_steps):
        scheduler.observe(1, 0, [0], 0.0, 2 * plain_s)
    assert scheduler.cost_model.target_s(1, 1) == pytest.approx(plain_s)
    scheduler.observe(1, 0, [0], 0.0, 2 * plain_s)
    assert scheduler.cost_model.target_s(1, 1) > 1.05 * plain_s  # settled: learned from


def test_a_long_plain_run_is_recorded_in_full_and_learned_from_in_part():
    scheduler = _speculating(settle_steps=4)
    plain_s = scheduler.cost_model.target_s(1, 1)
    before = scheduler.stats.num_steps
    learned = []
    for _ in range(40):
        scheduler.observe(1, 0, [0], 0.0, 2 * plain_s)
        learned.append(scheduler.cost_model.target_s(1, 1))
    assert scheduler.stats.num_steps - before == 40 and scheduler.stats.num_steps_by_k[0] == 40
    assert [d.realized_step_s for d in scheduler.history[-40:]] == [2 * plain_s] * 40
    moves = sum(b != a for a, b in zip(learned, learned[1:]))
    # The first settled step (5), then steps 8, 16, 32 of the run (powers of two, then multiples of 16).
    assert moves == 4, learned
