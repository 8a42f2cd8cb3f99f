"""Steady speculation kept in bulk: steps of a standing speculative choice are folded in at the next plan (or a view,
or a weight change), and that changes no decision and no estimate beyond rounding."""

import copy

import numpy as np
import pytest

from rollspec.scheduler import (
    AcceptanceConfig,
    AcceptanceEstimator,
    CatchUpCost,
    CostModel,
    DepthConfig,
    DepthScheduler,
    sample_num_accepted,
)
from rollspec.scheduler.standing import StandingChoice

CATCH_UP = {1: 1e-5, 64: 1e-4}
RECORD_FIELDS = ("step", "batch_size", "k", "is_probe", "is_check", "catch_up_tokens", "realized_tokens",
                 "realized_step_s")


class CountingModel(CostModel):
    """Counts `step_s` reads: one per plan and one per step taking the full path."""

    num_step_s = 0

    def step_s(self, batch_size, k_max):
        self.num_step_s += 1
        return super().step_s(batch_size, k_max)


def _drive(scheduler, device, *, seed, num_steps, views=None):
    """Like the engine: acceptance high and low in phases, batch sizes 1-16, a catch-up one wider per plain step and
    an admission now and then, a weight change every 997 steps. With `views`, read every 7 steps (and returned)."""
    rng, ks, catch_up, seen = np.random.default_rng(seed), [], 1, []
    for i in range(num_steps):
        alpha = 0.85 if (i // 700) % 2 == 0 else 0.2
        b = (1, 1, 4, 16, 2, 1)[(i // 500) % 6]
        if i % 997 == 996:
            scheduler.notify_weights_changed()
        k = scheduler.choose_depth(b, catch_up)
        accepted = sample_num_accepted(rng, [alpha] * 8, k, b)
        noise = np.exp(rng.normal(0.0, 0.1, 2))
        scheduler.observe(b, k, accepted.tolist(), k * device.draft_s(b) * noise[0], device.target_s(b, k + 1) * noise[1])
        catch_up = 1 + int(accepted.max()) if k else catch_up + 1
        catch_up += 7 if i % 97 == 0 else 0
        ks.append(k)
        if views and i % 7 == 0:
            seen.append((scheduler.last_decision, scheduler.stats))
    return ks, seen


def _schedulers(synthetic):
    device = synthetic.LinearDevice(target_fixed_s=5e-4, draft_fixed_s=2e-5)
    target, draft = device.profile()
    config = DepthConfig(history_len=10_000)  # the whole run
    bulk = DepthScheduler(config, CountingModel.from_profile(target, draft), CatchUpCost(CATCH_UP))
    single_model = CountingModel.from_profile(target, draft)
    single = DepthScheduler(config, synthetic.StepByStep(single_model), CatchUpCost(CATCH_UP))
    return device, bulk, single, single_model


def _same_record(a, b):
    assert tuple(getattr(a, f) for f in RECORD_FIELDS) == tuple(getattr(b, f) for f in RECORD_FIELDS)
    assert a.predicted_step_s == pytest.approx(b.predicted_step_s, rel=1e-12)
    assert a.predicted_tokens == pytest.approx(b.predicted_tokens, rel=1e-12)  # acceptance folded to rounding
    assert a.predicted_catch_up_s == pytest.approx(b.predicted_catch_up_s, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_steady_steps_kept_in_bulk_change_no_decision_and_no_estimate(synthetic, seed):
    device, bulk, single, single_model = _schedulers(synthetic)
    ks_bulk, seen_bulk = _drive(bulk, device, seed=seed, num_steps=6000, views=True)
    ks_single, seen_single = _drive(single, device, seed=seed, num_steps=6000, views=True)
    assert ks_bulk == ks_single  # the chosen k, step by step
    assert sum(k > 0 for k in ks_bulk) > 600  # speculation is exercised
    # Most speculative steps were kept in bulk: a full step reads the cost model once, a plan once.
    assert bulk.cost_model.num_step_s < 0.7 * single_model.num_step_s
    for (last_b, stats_b), (last_s, stats_s) in zip(seen_bulk, seen_single):  # views read while steps are kept
        _same_record(last_b, last_s)
        assert stats_b.num_steps_by_k == stats_s.num_steps_by_k and stats_b.num_tokens == stats_s.num_tokens
        assert stats_b.predicted_s == pytest.approx(stats_s.predicted_s, rel=1e-12)
    history_b, history_s = bulk.history, single.history
    assert len(history_b) == len(history_s) == 6000
    for a, b in zip(history_b, history_s):
        _same_record(a, b)
    assert bulk.acceptance.alphas == pytest.approx(single.acceptance.alphas, rel=1e-12)
    assert bulk.acceptance.num_steps == single.acceptance.num_steps
    for b in (1, 2, 4, 16):
        assert bulk.cost_model.step_s(b, 8) == pytest.approx(single_model.step_s(b, 8), rel=1e-12)
        assert bulk.catch_up.per_token_s(b) == pytest.approx(single.catch_up.per_token_s(b), rel=1e-12)
    # Admissions' catch-ups while speculating are kept in bulk too (their split is folded in, step by step).
    assert sum(d.k > 0 and d.predicted_catch_up_s > 0 for d in history_b) > 0


@pytest.mark.parametrize("batch_size", [1, 5])
def test_acceptance_of_steps_in_bulk_is_that_of_steps_one_by_one(batch_size):
    rng = np.random.default_rng(batch_size)
    config = AcceptanceConfig(half_life_steps=6.0)
    one, bulk = AcceptanceEstimator(8, config), AcceptanceEstimator(8, config)
    for _ in range(40):
        k = int(rng.integers(1, 9))
        steps = [sample_num_accepted(rng, rng.uniform(0.1, 0.95, 8), k, batch_size).tolist()
                 for _ in range(int(rng.integers(1, 6)))]
        for accepted in steps:
            one.observe(k, accepted)
        bulk.observe_steps(k, steps)
        one.advance(3)
        bulk.advance(3)
        assert bulk.num_steps == one.num_steps
        assert bulk.alphas == pytest.approx(one.alphas, rel=1e-13)
        assert bulk.evidence == pytest.approx(one.evidence, rel=1e-13)


def test_cost_of_steps_in_bulk_is_that_of_steps_one_by_one(synthetic):
    device = synthetic.LinearDevice()
    one, bulk = device.cost_model(), device.cost_model()
    rng = np.random.default_rng(0)
    for k in (3, 3, 5, 1, 5, 8):  # a first step at each depth in full, the rest in bulk
        b = int(rng.integers(1, 40))
        times = [(k * device.draft_s(b) * rng.lognormal(0, 0.3), device.target_s(b, k + 1) * rng.lognormal(0.2, 0.3))
                 for _ in range(6)]
        for model in (one, bulk):
            model.observe(b, k, *times[0])
        predicted = []
        for draft_s, target_s in times[1:]:
            predicted.append(float(one.step_s(b, 8)[k]))
            one.observe(b, k, draft_s, target_s)
        before = bulk.step_s(b, 8).copy()
        drafts, targets = zip(*times[1:])
        assert bulk.observe_steady(b, k, drafts, targets, apply=False) == pytest.approx(predicted, rel=1e-12)
        assert np.array_equal(bulk.step_s(b, 8), before)  # a view changes nothing
        assert bulk.observe_steady(b, k, drafts, targets) == pytest.approx(predicted, rel=1e-12)
        for batch_size in (1, b, 64):
            assert bulk.step_s(batch_size, 8) == pytest.approx(one.step_s(batch_size, 8), rel=1e-12)
            assert bulk.draft_s(batch_size) == pytest.approx(one.draft_s(batch_size), rel=1e-12)


def test_a_speculative_choice_stands_through_an_admissions_catch_up(synthetic):
    # At B = 1 on the zoo every admission (every ~4 steps at k = 4) brought a prompt-wide catch-up and re-planned:
    # ~40% of speculative steps. A plan from k > 0 charges no catch-up offered, so it chooses the same anyway.
    choice = StandingChoice(batch_size=1, k=4, catch_up_tokens=1, until_step=10)
    assert choice.holds(1, 30, 5)
    assert not choice.holds(2, 1, 5) and not choice.holds(1, 1, 10)  # a new batch size, or the interval's end
    # (A response's first step at B = 1 has a plan of its own, fresh.FirstSteps: off here.)
    device = synthetic.LinearDevice(target_fixed_s=5e-4, draft_fixed_s=2e-5)
    scheduler = DepthScheduler(DepthConfig(plan_first_steps=False), device.cost_model(), CatchUpCost(CATCH_UP))
    synthetic.run_steps(scheduler, device, alphas=[0.85] * 8, batch_size=1, num_steps=300,
                        rng=np.random.default_rng(0))
    ks = []
    for _ in range(200):
        narrow, wide = copy.deepcopy(scheduler), copy.deepcopy(scheduler)
        ks.append(narrow.choose_depth(1, 1))
        assert wide.choose_depth(1, 40) == ks[-1]
        k = scheduler.choose_depth(1, 1)
        scheduler.observe(1, k, [min(3, k)], k * 2e-5, device.target_s(1, k + 1))
    assert sum(k > 0 for k in ks) > 190  # speculating throughout (a plain step for the realized check now and then)


def test_a_first_step_runs_its_own_depth_and_the_choice_stands_around_it(synthetic):
    # At B = 1 a prompt-wide catch-up starts a response: it runs the first steps' depth (here they accept everything,
    # the others accept 1 draft in 4: k_max against k = 1 for them), teaches the plan nothing, and the steps
    # after it run the standing choice as if it had not been.
    device = synthetic.LinearDevice(target_fixed_s=5e-4, draft_fixed_s=2e-5)
    scheduler = DepthScheduler(DepthConfig(), device.cost_model(), CatchUpCost(CATCH_UP))
    rng = np.random.default_rng(0)
    firsts, ks = [], []
    for i in range(2000):
        first = i % 4 == 0
        k = scheduler.choose_depth(1, 40 if first else 1)
        accepted = [k] if first else sample_num_accepted(rng, [0.25] * 8, k, 1).tolist()
        scheduler.observe(1, k, accepted, k * 2e-5, device.target_s(1, k + 1))
        (firsts if first else ks).append(k)
    assert np.mean(np.array(firsts[100:]) == 8) > 0.95
    assert np.median(ks[100:]) == 1  # the others at their own best (k = 1 for alpha 0.25)
    assert scheduler.planning_alphas()[0] == pytest.approx(0.25, abs=0.1)  # no first step in the estimate
    assert len(scheduler.history) == 1024 and [d.step for d in scheduler.history] == list(range(976, 2000))
    assert scheduler.stats.num_steps == 2000 and scheduler.stats.num_steps_by_k[8] >= 475
