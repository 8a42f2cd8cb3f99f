"""Bounded-staleness admission: the synchronous case, the bound under a simulated pipeline, the consumption check."""

import heapq

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollspec.scheduler import DROP_REASON_STALE, AdmissionConfig, AdmissionController


def test_synchronous_dispatches_one_step_and_waits_for_the_new_version():
    ctrl = AdmissionController(AdmissionConfig(max_staleness=0, prompts_per_step=4, group_size=8))
    assert ctrl.trajectories_per_step == 32
    ask = ctrl.num_prompts_to_dispatch
    assert ask(policy_version=0, next_learner_step=0, num_in_flight=0, num_buffered=0) == 4
    assert ask(policy_version=0, next_learner_step=0, num_in_flight=32, num_buffered=0) == 0
    assert ask(policy_version=0, next_learner_step=0, num_in_flight=8, num_buffered=16) == 1
    assert ask(policy_version=0, next_learner_step=0, num_in_flight=0, num_buffered=32) == 0
    # The learner took the batch for step 0 and trains: nothing until version 1 is out.
    assert ask(policy_version=0, next_learner_step=1, num_in_flight=0, num_buffered=0) == 0
    assert ask(policy_version=1, next_learner_step=1, num_in_flight=0, num_buffered=0) == 4


def test_staleness_one_allows_the_next_step_to_be_generated_during_training():
    ctrl = AdmissionController(AdmissionConfig(max_staleness=1, prompts_per_step=2, group_size=4))
    ask = ctrl.num_prompts_to_dispatch
    assert ask(policy_version=0, next_learner_step=0, num_in_flight=0, num_buffered=0) == 4
    assert ask(policy_version=0, next_learner_step=1, num_in_flight=0, num_buffered=8) == 0
    assert ask(policy_version=0, next_learner_step=1, num_in_flight=0, num_buffered=0) == 2
    assert ask(policy_version=1, next_learner_step=1, num_in_flight=0, num_buffered=8) == 2
    # Partial groups are never dispatched: 3 free trajectory slots with groups of 4 admit none.
    assert ask(policy_version=1, next_learner_step=1, num_in_flight=5, num_buffered=8) == 0


def test_the_consumption_check_counts_stale_drops():
    ctrl = AdmissionController(AdmissionConfig(max_staleness=2, prompts_per_step=1))
    assert ctrl.is_fresh_enough(3, 5) and not ctrl.is_fresh_enough(3, 6)
    assert ctrl.last_step_for(3) == 5
    assert [ctrl.admit(v, 6) for v in (6, 4, 3, 5)] == [True, True, False, True]
    stats = ctrl.stats
    assert (stats.num_admitted, stats.num_dropped_stale) == (3, 1)
    assert stats.staleness_counts == {0: 1, 2: 1, 1: 1}
    assert DROP_REASON_STALE == "stale"


def _simulate(ctrl, *, num_ticks, latency, train_ticks, adopt_lag, max_prompts_per_tick, oldest_first=False):
    """A pipeline: dispatch per admission, rollouts finish after `latency()` ticks, the learner takes
    a batch (in arrival order, or with select_batch), trains for `train_ticks`, publishes; rollout
    actors adopt versions `adopt_lag` ticks after publication. Every consumed or dropped trajectory
    goes through admit(). Returns (staleness of each, max pending trajectories, learner steps)."""
    n = ctrl.trajectories_per_step
    group = ctrl.config.group_size
    in_flight = []  # heap of (finish_tick, dispatch_seq, version)
    buffer = []  # arrival order of versions
    published = []  # (tick, version)
    actor_version = next_step = 0
    training_until = -1
    seq = 0
    staleness, max_pending = [], 0
    for tick in range(num_ticks):
        while published and published[0][0] + adopt_lag <= tick:
            actor_version = published.pop(0)[1]
        if tick == training_until:
            published.append((tick, next_step))  # step next_step - 1 done: version next_step
        allowed = ctrl.num_prompts_to_dispatch(policy_version=actor_version, next_learner_step=next_step,
                                               num_in_flight=len(in_flight), num_buffered=len(buffer))
        for _ in range(min(allowed, max_prompts_per_tick)):
            for _ in range(group):
                heapq.heappush(in_flight, (tick + latency(), seq, actor_version))
                seq += 1
        max_pending = max(max_pending, len(in_flight) + len(buffer))
        while in_flight and in_flight[0][0] <= tick:
            buffer.append(heapq.heappop(in_flight)[2])
        if tick < training_until:
            continue
        if oldest_first:
            batch_idx, stale_idx = ctrl.select_batch(buffer, next_step)
            if len(batch_idx) < n:
                continue
            taken = set(batch_idx) | set(stale_idx)
            consumed = [buffer[i] for i in sorted(taken)]
            buffer = [v for i, v in enumerate(buffer) if i not in taken]
        elif len(buffer) >= n:
            consumed, buffer = buffer[:n], buffer[n:]
        else:
            continue
        for version in consumed:
            staleness.append(next_step - version)
            ctrl.admit(version, next_step)
        next_step += 1
        training_until = tick + train_ticks
    return staleness, max_pending, next_step


@given(st.integers(0, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 6), st.integers(0, 5),
       st.integers(1, 8))
@settings(max_examples=60, deadline=None)
def test_in_order_pipeline_never_exceeds_the_bound(max_staleness, prompts, group, train_ticks, adopt_lag,
                                                   max_prompts_per_tick):
    ctrl = AdmissionController(AdmissionConfig(max_staleness=max_staleness, prompts_per_step=prompts,
                                               group_size=group))
    staleness, max_pending, num_steps = _simulate(ctrl, num_ticks=300, latency=lambda: 3, train_ticks=train_ticks,
                                                  adopt_lag=adopt_lag, max_prompts_per_tick=max_prompts_per_tick)
    assert num_steps >= 5  # the pipeline makes progress
    assert max(staleness) <= max_staleness
    assert ctrl.stats.num_dropped_stale == 0
    assert max_pending <= (max_staleness + 1) * ctrl.trajectories_per_step
    if max_staleness > 0 and adopt_lag == 0 and train_ticks >= 3:
        assert max(staleness) >= 1  # asynchrony is actually used, not admission refusing everything


def test_one_more_prompt_than_admitted_would_break_the_bound():
    # Tightness: an admission that let one extra prompt through each time produces a stale trajectory.
    class Greedy(AdmissionController):
        def num_prompts_to_dispatch(self, **kw):
            return super().num_prompts_to_dispatch(**kw) + 1

    ctrl = Greedy(AdmissionConfig(max_staleness=1, prompts_per_step=2, group_size=2))
    staleness, _, _ = _simulate(ctrl, num_ticks=200, latency=lambda: 3,
                                train_ticks=4, adopt_lag=0, max_prompts_per_tick=100)
    assert max(staleness) > 1 and ctrl.stats.num_dropped_stale > 0


@pytest.mark.parametrize("max_staleness", [0, 2])
def test_out_of_order_stragglers_are_caught_at_consumption(max_staleness):
    ctrl = AdmissionController(AdmissionConfig(max_staleness=max_staleness, prompts_per_step=4, group_size=2))
    rng = np.random.default_rng(1)
    staleness, _, num_steps = _simulate(ctrl, num_ticks=400, latency=lambda: int(rng.integers(1, 40)),
                                        train_ticks=3, adopt_lag=0, max_prompts_per_tick=100)
    stats = ctrl.stats
    assert stats.num_admitted + stats.num_dropped_stale == len(staleness)
    assert stats.num_dropped_stale == sum(s > max_staleness for s in staleness)
    assert all(d <= max_staleness for d in stats.staleness_counts)
    assert num_steps >= 5
    # Synchronous runs cannot go stale (only one step's worth is ever pending); async ones here do.
    assert (stats.num_dropped_stale > 0) == (max_staleness > 0)


def test_select_batch_takes_the_oldest_fresh_trajectories_and_names_the_stale():
    ctrl = AdmissionController(AdmissionConfig(max_staleness=1, prompts_per_step=3))
    versions = [5, 3, 4, 5, 2, 4, 4]
    batch, stale = ctrl.select_batch(versions, learner_step=5)
    assert stale == [1, 4]  # versions 3 and 2 are more than one step old for step 5
    assert batch == [2, 5, 6]  # the three version-4 trajectories, in buffer order
    assert ctrl.stats.num_admitted == 0  # pure: counting is the caller's, through admit()


def test_oldest_first_consumption_drops_fewer_stragglers_than_arrival_order():
    def run(oldest_first):
        ctrl = AdmissionController(AdmissionConfig(max_staleness=2, prompts_per_step=4, group_size=2))
        rng = np.random.default_rng(0)
        _simulate(ctrl, num_ticks=400, latency=lambda: int(rng.integers(1, 40)), train_ticks=3,
                  adopt_lag=0, max_prompts_per_tick=100, oldest_first=oldest_first)
        stats = ctrl.stats
        return stats.num_dropped_stale / (stats.num_admitted + stats.num_dropped_stale)

    assert run(oldest_first=True) < 0.7 * run(oldest_first=False)
