"""The draining replica: exact sums at k = 0, the (k + 1) ceiling, the adaptive policy never losing, KV limits."""

import numpy as np
import pytest

from rollspec.sim.rollout import simulate_drain
from rollspec.sim.speculation import Speculation


@pytest.mark.parametrize("sampled", [False, True])
def test_plain_drain_is_the_sum_of_step_costs_over_the_shrinking_batch(sampled, simkit):
    # Lengths 2, 3, 5: the prefill emits each row's first token, then 1, 2 and 4 decode steps.
    # Steps run at B = 3, 2, 1, 1 with c(B) = 1 + 0.5 B, after one prefill of 0.5 s.
    replica = simkit.make_replica(simkit.linear_cost(), sampled=sampled)
    result = simulate_drain(replica, np.array([2, 3, 5]))
    assert result.time_s == pytest.approx(0.5 + 2.5 + 2.0 + 1.5 + 1.5, rel=1e-12)
    assert result.stats.num_steps == 4 and result.stats.num_tokens == pytest.approx(10)


def test_a_one_token_response_finishes_at_prefill(simkit):
    result = simulate_drain(simkit.make_replica(simkit.linear_cost()), np.array([1, 1]))
    assert result.time_s == pytest.approx(0.5) and result.stats.num_steps == 0


@pytest.mark.parametrize("k", [1, 3, 7])
def test_perfect_acceptance_and_free_drafting_approach_k_plus_one(k, simkit):
    # Verify width costs nothing and drafting is free: each step emits k + 1 tokens at the price of one.
    cost = simkit.linear_cost(prefill_s=0.0)
    lengths = np.full(4, 2001)
    plain = simulate_drain(simkit.make_replica(cost), lengths).time_s
    spec = simulate_drain(simkit.make_replica(cost, Speculation.FIXED, alpha=1.0, fixed_k=k, k_max=k), lengths).time_s
    assert plain / spec == pytest.approx(k + 1, rel=0.01)


@pytest.mark.parametrize("alpha", [0.05, 0.4, 0.8])
@pytest.mark.parametrize("draft_s", [0.05, 1.0, 4.0])
@pytest.mark.parametrize("batch", [1, 48])
def test_adaptive_speculation_is_never_slower_than_plain(alpha, draft_s, batch, simkit):
    # Verify cost grows with q here, so deep drafting with poor acceptance would lose badly.
    cost = simkit.linear_cost(per_token_s=0.2, draft_s=draft_s)
    lengths = np.random.default_rng(1).integers(300, 600, size=batch)
    plain = simulate_drain(simkit.make_replica(cost), lengths).time_s
    adaptive = simulate_drain(simkit.make_replica(cost, Speculation.ADAPTIVE, alpha=alpha), lengths).time_s
    # Allowance for what the policy spends learning: it plans with a prior of 0.6 until a position has
    # evidence (a fixed number of steps, about 2% of these drains at B = 1), and probes rarely.
    assert adaptive <= plain * 1.02


def test_fixed_depth_loses_where_adaptive_falls_back(simkit):
    cost = simkit.linear_cost(per_token_s=0.2, draft_s=1.0)
    lengths = np.full(48, 200)
    plain = simulate_drain(simkit.make_replica(cost), lengths).time_s
    fixed = simulate_drain(simkit.make_replica(cost, Speculation.FIXED, alpha=0.05), lengths).time_s
    adaptive = simulate_drain(simkit.make_replica(cost, Speculation.ADAPTIVE, alpha=0.05), lengths)
    assert fixed > 1.5 * plain and adaptive.time_s <= 1.02 * plain
    assert adaptive.stats.steps_by_k.get(0, 0) > 0.9 * adaptive.stats.num_steps


def test_adaptive_speculation_pays_where_drafting_is_cheap_and_accepted(simkit):
    cost = simkit.linear_cost(draft_s=0.05)
    lengths = np.full(8, 300)
    plain = simulate_drain(simkit.make_replica(cost), lengths).time_s
    adaptive = simulate_drain(simkit.make_replica(cost, Speculation.ADAPTIVE, alpha=0.9), lengths).time_s
    assert plain / adaptive > 3.0


def test_kv_capacity_preempts_and_recomputes_but_every_token_is_generated(simkit):
    lengths = np.full(16, 60)
    roomy = simulate_drain(simkit.make_replica(simkit.linear_cost()), lengths)
    tight = simulate_drain(simkit.make_replica(simkit.linear_cost(), kv_capacity_tokens=400.0), lengths)
    assert roomy.stats.num_preemptions == 0 and tight.stats.num_preemptions > 0
    assert tight.stats.num_tokens == pytest.approx(roomy.stats.num_tokens) == pytest.approx(16 * 60)
    assert tight.stats.prefill_s > roomy.stats.prefill_s


def test_rows_beyond_max_num_seqs_wait_for_a_free_row(simkit):
    lengths = np.full(6, 3)
    result = simulate_drain(simkit.make_replica(simkit.linear_cost(), max_num_seqs=2), lengths)
    # Three waves of two rows: prefill 0.5 then 2 decode steps at B = 2 (c = 2.0) each.
    assert result.time_s == pytest.approx(3 * (0.5 + 2 * 2.0))


def test_the_drafter_catches_up_once_per_admission_and_only_when_speculating(simkit):
    from rollspec.sim.table_cost import CostLevel, TableCost

    base = simkit.linear_cost()
    level = CostLevel(0.0, {(b, q): base.target_s(b, q) for b in (1, 2, 4, 8) for q in (1, 5)},
                      {b: 0.0 for b in (1, 2, 4, 8)})
    with_catch_up = TableCost(levels=[level], prefill_s={1: 0.5}, draft_admit_s={1: 10.0, 8: 10.0})
    without = TableCost(levels=[level], prefill_s={1: 0.5})
    lengths = np.full(4, 30)
    for mode, extra in ((Speculation.PLAIN, 0.0), (Speculation.FIXED, 10.0)):
        slow = simulate_drain(simkit.make_replica(with_catch_up, mode, alpha=1.0), lengths).time_s
        fast = simulate_drain(simkit.make_replica(without, mode, alpha=1.0), lengths).time_s
        assert slow - fast == pytest.approx(extra)
    # Two waves of admission: the drafter catches up twice.
    queued = simulate_drain(simkit.make_replica(with_catch_up, Speculation.FIXED, alpha=1.0, max_num_seqs=2), lengths)
    plain_queue = simulate_drain(simkit.make_replica(without, Speculation.FIXED, alpha=1.0, max_num_seqs=2), lengths)
    assert queued.time_s - plain_queue.time_s == pytest.approx(20.0)
