"""A probe from plain decoding runs cold; its trial's steady steps, not the probe, price speculation."""

import types

import numpy as np
import pytest

from rollspec.scheduler import DepthConfig, DepthScheduler, sample_num_accepted
from rollspec.scheduler.probe import TRIAL_STEPS, ProbePlanner

ALPHA, K_MAX = 0.87, 8


def _zoo_like_device(synthetic):
    """B = 1 on the zoo with EAGLE, roughly: plain ~0.25 ms, k = 4 ~0.65 ms, k = 2-6 1.3-1.5x plain's tokens/s."""
    return synthetic.LinearDevice(target_fixed_s=2.3e-4, target_per_token_s=2e-5, draft_fixed_s=4e-5,
                                  draft_per_row_s=0.0, draft_step_s=1.6e-4)


def _run(scheduler, device, *, num_steps, seed, burst=(300, 400), burst_factor=1.7, cold=2.5):
    """Steps at B = 1; speculative steps in `burst` cost burst_factor x (a co-tenant slowing speculation only, as
    seen on the zoo), and the first speculative step after a plain one drafts `cold` x slower. Returns the k's."""
    rng = np.random.default_rng(seed)
    ks, last_k = [], 0
    for i in range(num_steps):
        k = scheduler.choose_depth(1)
        noise = np.exp(rng.normal(0.0, 0.05, size=2))
        draft_s, target_s = device.drafting_s(1, k) * noise[0], device.target_s(1, k + 1) * noise[1]
        if k and burst[0] <= i < burst[1]:
            draft_s, target_s = draft_s * burst_factor, target_s * burst_factor
        if k and last_k == 0:
            draft_s *= cold
        scheduler.observe(1, k, sample_num_accepted(rng, [ALPHA] * K_MAX, k, 1), draft_s, target_s)
        ks.append(k)
        last_k = k
    return np.array(ks)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_burst_that_priced_speculation_dear_does_not_lock_plain_decoding_in(synthetic, seed):
    # Learning from cold probes alone locked seeds 0, 2 and 3 here at plain for good (the test fails for them).
    device = _zoo_like_device(synthetic)
    scheduler = DepthScheduler(DepthConfig(), device.cost_model(max_batch_size=8))
    ks = _run(scheduler, device, num_steps=4000, seed=seed)
    assert (ks[200:300] > 0).mean() > 0.9  # speculating before the burst
    assert (ks[3000:] > 0).mean() > 0.95  # and long after it, back at depths that pay: plain runs at 0.64 of the best
    true = device.true_rates(1, [ALPHA] * K_MAX, K_MAX)
    assert (true[ks[3000:]] / true.max()).mean() > 0.85


def test_without_the_burst_nothing_changes(synthetic):
    device = _zoo_like_device(synthetic)
    scheduler = DepthScheduler(DepthConfig(), device.cost_model(max_batch_size=8))
    ks = _run(scheduler, device, num_steps=1500, seed=0, burst_factor=1.0)
    assert (ks[100:] > 0).mean() > 0.97


def test_a_cold_probe_prices_nothing_and_its_trial_prices_speculation(synthetic):
    device = _zoo_like_device(synthetic)
    costs = device.cost_model(max_batch_size=8)
    scheduler = DepthScheduler(DepthConfig(probe_interval_steps=64), costs)
    scheduler.notify_weights_changed()  # a probe is due at once
    before = costs.step_s(1, K_MAX).copy()
    k = scheduler.choose_depth(1)
    assert k > 0 and scheduler.stats.num_probes == 0
    scheduler.observe(1, k, [0], 3 * device.drafting_s(1, k), 3 * device.target_s(1, k + 1))  # cold, 3x dear
    assert scheduler.last_decision.is_probe
    assert scheduler.cost_model.step_s(1, K_MAX) == pytest.approx(before, rel=1e-9)
    trial = []
    for _ in range(TRIAL_STEPS - 1):
        trial.append(scheduler.choose_depth(1))
        scheduler.observe(1, trial[-1], [0], 0.5 * device.drafting_s(1, k), 0.5 * device.target_s(1, k + 1))
    assert trial == [k] * (TRIAL_STEPS - 1)
    assert scheduler.stats.num_probes == 1
    assert scheduler.cost_model.step_s(1, K_MAX)[k] < 0.8 * before[k]  # the steady steps' price, half the profile's


def _deep_device(synthetic):
    """B = 1 with an EAGLE-like drafter where every position accepts 0.87: k = 8 is best, k = 6 0.95 of it."""
    return synthetic.LinearDevice(target_fixed_s=2.3e-4, target_per_token_s=1e-5, draft_fixed_s=1.5e-5,
                                  draft_per_row_s=0.0, draft_step_s=1.6e-4)


def _profile_dear_at(device, q, factor):
    """The device's start-up profile with the verify of width q measured `factor` x dear (a co-tenant's burst)."""
    from rollspec.scheduler import CostModel, profile_points

    batch_sizes, qs = profile_points(8, K_MAX)
    target = {(b, w): device.target_s(b, w) * (factor if w == q else 1.0) for b in batch_sizes for w in qs}
    return CostModel.from_profile(target, {b: device.draft_s(b) for b in batch_sizes},
                                  draft_fixed_s={b: device.draft_step_s for b in batch_sizes})


def _depths(scheduler, device, alphas, num_steps, seed):
    rng = np.random.default_rng(seed)
    ks = []
    for _ in range(num_steps):
        k = scheduler.choose_depth(1)
        noise = np.exp(rng.normal(0.0, 0.05, size=2))
        scheduler.observe(1, k, sample_num_accepted(rng, alphas, k, 1), device.drafting_s(1, k) * noise[0],
                          device.target_s(1, k + 1) * noise[1])
        ks.append(k)
    return np.array(ks)


@pytest.mark.parametrize("seed", range(6))
def test_a_depth_the_profile_priced_dear_is_tried_and_kept(synthetic, seed):
    # The profile prices k = 8 20% dear (q = 9 1.375x): the plan settles at k = 5-7 and, with single probe steps,
    # seeds 0, 1 and 5 did not hold k = 8 for 32 steps within 400 (the test fails for them); trials measure it.
    device = _deep_device(synthetic)
    costs = _profile_dear_at(device, K_MAX + 1, 1.375)
    assert costs.step_s(1, K_MAX)[K_MAX] == pytest.approx(1.2 * device.step_s(1, K_MAX), rel=0.01)
    true = device.true_rates(1, [ALPHA] * K_MAX, K_MAX)
    assert int(np.argmax(true)) == K_MAX and true[6] < 0.96 * true[K_MAX]
    ks = _depths(DepthScheduler(DepthConfig(), costs), device, [ALPHA] * K_MAX, 400, seed)
    assert any((ks[i: i + 32] == K_MAX).all() for i in range(len(ks) - 32)), np.bincount(ks, minlength=K_MAX + 1)


def test_trials_beyond_a_depth_that_pays_cost_little_where_deeper_ones_do_not(synthetic):
    # Positions 5-8 accept 0.15: k = 4 is best, k = 5 0.97 of it, k = 6-8 0.93-0.86. Trials are budgeted at what
    # they are predicted to lose (here ~1% of the best rate, where no trial ran 0.998 of it).
    device = _deep_device(synthetic)
    alphas = [ALPHA] * 4 + [0.15] * 4
    true = device.true_rates(1, alphas, K_MAX)
    assert int(np.argmax(true)) == 4 and true[6] < 0.94 * true[4]
    for seed in range(2):
        ks = _depths(DepthScheduler(DepthConfig(), device.cost_model(max_batch_size=8)), device, alphas, 3000, seed)
        assert np.mean(true[ks[500:]]) > 0.98 * true.max()
        assert (ks[500:] > 5).mean() < 0.1


def _batch_depths(scheduler, device, alphas, num_steps, seed, batch_size=4):
    rng = np.random.default_rng(seed)
    ks = []
    for _ in range(num_steps):
        k = scheduler.choose_depth(batch_size)
        noise = np.exp(rng.normal(0.0, 0.05, size=2))
        scheduler.observe(batch_size, k, sample_num_accepted(rng, alphas, k, batch_size),
                          device.drafting_s(batch_size, k) * noise[0], device.target_s(batch_size, k + 1) * noise[1])
        ks.append(k)
    return np.array(ks)


@pytest.mark.parametrize("seed", range(3))
def test_trials_that_keep_realizing_losses_come_less_often(synthetic, seed):
    # B = 4, positions 5-8 accept 0.15: k = 4 is best and every trial deeper realizes a loss. Charged only their
    # predicted loss, trials ran every ~128 steps (7-8% of steps beyond k = 4 in steps 2,000-6,000, for 0.99 of the
    # best rate); charged what they realized, they come less often.
    device = _deep_device(synthetic)
    alphas = [ALPHA] * 4 + [0.15] * 4
    true = device.true_rates(4, alphas, K_MAX)
    assert int(np.argmax(true)) == 4 and true[5] < 0.98 * true[4]
    ks = _batch_depths(DepthScheduler(DepthConfig(), device.cost_model(max_batch_size=8)), device, alphas, 6000, seed)
    assert (ks[2000:] > 4).mean() < 0.04, np.bincount(ks[2000:], minlength=K_MAX + 1)
    assert np.mean(true[ks[2000:]]) > 0.98 * true.max()


@pytest.mark.parametrize("seed", range(3))
def test_trials_that_realize_gains_keep_coming_at_a_batch(synthetic, seed):
    # B = 4, every position accepts 0.87: k = 7 is best, and the profile prices its verify 37.5% dear, so the plan
    # starts short of it; trials find it.
    device = _deep_device(synthetic)
    costs = _profile_dear_at(device, 7 + 1, 1.375)
    true = device.true_rates(4, [ALPHA] * K_MAX, K_MAX)
    assert int(np.argmax(true)) == 7 and true[5] < 0.98 * true[7]
    ks = _batch_depths(DepthScheduler(DepthConfig(), costs), device, [ALPHA] * K_MAX, 3000, seed)
    assert np.mean(true[ks[1000:]]) > 0.97 * true.max(), np.bincount(ks[1000:], minlength=K_MAX + 1)


class _GreedySteps:
    """RealizedGain's recent steps at the greedy depth: 100 tokens a second."""

    def speculative_rate(self, batch_size, k, expected_k):
        return types.SimpleNamespace(tokens=100, seconds=1.0)


def test_trials_charged_under_old_weights_are_forgotten_when_weights_change():
    # Trials that realized half the greedy depth's tokens/s stretch the interval; after a weight change the policy's
    # acceptance is new, so the stretch goes with the evidence (as RealizedGain's and the realized check's do).
    planner = ProbePlanner(DepthConfig(), _GreedySteps())
    expected, base = [1.0] * (K_MAX + 1), DepthConfig().probe_interval_steps
    for t in range(6):
        planner.trials.start(4, 4, 6, 100 * t)
        planner.trials.observe(100 * t + 1, 4, 6, [50] * (TRIAL_STEPS - 1), [1.0] * (TRIAL_STEPS - 1))
        planner.trials.interval(4, expected)  # charges it
    assert planner.trials.interval(4, expected) > base
    planner.reopen(700)
    assert planner.trials.interval(4, expected) == base
