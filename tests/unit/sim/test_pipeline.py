"""Sync and bounded-staleness async GRPO steps: s = 0 is the synchronous step, speedup grows with s and saturates."""

import dataclasses

import numpy as np
import pytest

from rollspec.sim.lengths import LengthDistribution, LengthSequence
from rollspec.sim.pipeline import simulate_pipeline
from rollspec.sim.speculation import Speculation
from rollspec.sim.training import TrainingConfig, simulate_sync

LENGTHS = LengthDistribution.lognormal(40, 0.8, 300)
# The learner's time does not depend on the tokens it trains on here: with a per-token cost, a tight
# bound that drops long responses also shortens the learner step, which blurs what staleness buys.
TRAINING = TrainingConfig(prompts_per_step=4, group_size=4, reward_s=1.0, learner_fixed_s=70.0,
                          learner_s_per_token=0.0, weight_sync_s=3.0)


def _cost(simkit):
    # Memory-bound like a GPU decode: the step barely grows with the batch.
    return simkit.linear_cost(per_row_s=0.05, draft_s=0.1)


def _pipeline(simkit, mode, max_staleness, num_steps, *, colocated=False, lease=True, seed=0, rows=32):
    training = dataclasses.replace(TRAINING, max_staleness=max_staleness, colocated=colocated,
                                   lease_to_free_rows=lease)
    replica = simkit.make_replica(_cost(simkit), mode, max_num_seqs=rows, seed=seed)
    return simulate_pipeline(replica=replica, lengths=LENGTHS, training=training, prompt_tokens=4,
                             num_steps=num_steps, rng=np.random.default_rng(seed))


@pytest.mark.parametrize("mode", [Speculation.PLAIN, Speculation.FIXED])
@pytest.mark.parametrize("colocated", [False, True])
def test_async_with_zero_staleness_is_the_synchronous_step(simkit, mode, colocated):
    sync = simulate_sync(replica=simkit.make_replica(_cost(simkit), mode, max_num_seqs=32),
                         lengths=LENGTHS, training=TRAINING, prompt_tokens=4, num_steps=6,
                         rng=np.random.default_rng(0))
    pipeline = _pipeline(simkit, mode, 0, 6, colocated=colocated)
    # Step 0 of the pipeline starts at t = 0, so its intervals are steps 1 .. 5.
    assert pipeline.mean_step_s == pytest.approx(sync.step_s[1:].mean(), rel=1e-9)
    assert pipeline.staleness_counts == {0: 6 * TRAINING.trajectories_per_step}


def test_async_with_zero_staleness_matches_sync_under_the_adaptive_policy(simkit):
    sync = simulate_sync(replica=simkit.make_replica(_cost(simkit), Speculation.ADAPTIVE,
                                                     max_num_seqs=32),
                         lengths=LENGTHS, training=TRAINING, prompt_tokens=4, num_steps=6,
                         rng=np.random.default_rng(0))
    # Chunk boundaries differ (scores arriving split chunks), so the policy's random draws differ a little.
    assert _pipeline(simkit, Speculation.ADAPTIVE, 0, 6).mean_step_s == pytest.approx(sync.step_s[1:].mean(), rel=0.03)


def test_async_speedup_grows_with_the_staleness_bound_and_saturates(simkit):
    bounds = [0, 1, 2, 4, 8]
    step_s = {s: _pipeline(simkit, Speculation.PLAIN, s, 16 + s).mean_step_s for s in bounds}
    speedup = [step_s[0] / step_s[s] for s in bounds]
    assert speedup[1] > 1.3  # overlap of rollout with learner + weight sync
    assert all(b >= a * 0.98 for a, b in zip(speedup, speedup[1:])), speedup
    assert speedup[-1] == pytest.approx(speedup[-2], rel=0.03), speedup  # learner-bound: more staleness buys nothing
    learner_s = TRAINING.learner_fixed_s + TRAINING.weight_sync_s
    assert step_s[8] >= learner_s  # never faster than the learner's own step


@pytest.mark.parametrize("lease", [True, False])
def test_no_trajectory_trains_beyond_the_staleness_bound(simkit, lease):
    for bound in (1, 3):
        result = _pipeline(simkit, Speculation.PLAIN, bound, 10, lease=lease)
        assert max(result.staleness_counts) <= bound


def test_queueing_the_whole_staleness_allowance_expires_long_responses(simkit):
    # Without leasing to free rows, prompts wait in the engine queue and age while they wait.
    queued = _pipeline(simkit, Speculation.PLAIN, 4, 12, lease=False, rows=8)
    leased = _pipeline(simkit, Speculation.PLAIN, 4, 12, lease=True, rows=8)
    assert leased.num_dropped_stale == 0 < queued.num_dropped_stale
    assert queued.mean_step_s > leased.mean_step_s


def test_colocated_rollout_and_learner_never_overlap(simkit):
    result = _pipeline(simkit, Speculation.PLAIN, 2, 10, colocated=True)
    apart = _pipeline(simkit, Speculation.PLAIN, 2, 10, colocated=False)
    assert result.generator_busy_s + result.learner_busy_s <= result.step_end_s[-1] * (1 + 1e-9)
    assert apart.generator_busy_s + apart.learner_busy_s > apart.step_end_s[-1]


def test_a_length_sequence_replays_in_dispatch_order_and_wraps():
    lengths = LengthSequence([5, 6, 7])
    rng = np.random.default_rng(0)
    assert lengths.sample(rng, 2).tolist() == [5, 6] and lengths.sample(rng, 3).tolist() == [7, 5, 6]


def _drained(simkit, max_staleness, num_steps, drain):
    training = dataclasses.replace(TRAINING, max_staleness=max_staleness, drain_to_swap=drain)
    return simulate_pipeline(replica=simkit.make_replica(_cost(simkit), Speculation.PLAIN, max_num_seqs=32),
                             lengths=LENGTHS, training=training, prompt_tokens=4, num_steps=num_steps,
                             rng=np.random.default_rng(0))


def test_draining_before_a_weight_swap_is_free_when_synchronous_and_costs_overlap_when_async(simkit):
    # Sync: the replica is idle when weights arrive anyway, so swapping after a drain is the same step.
    assert _drained(simkit, 0, 6, True).mean_step_s == pytest.approx(_drained(simkit, 0, 6, False).mean_step_s,
                                                                      rel=1e-9)
    # Async: the replica stops taking prompts until its long tail finishes, a bubble the pause-only model has not.
    drained, paused = _drained(simkit, 2, 14, True), _drained(simkit, 2, 14, False)
    assert drained.mean_step_s > 1.05 * paused.mean_step_s
    assert max(drained.staleness_counts) <= 2
