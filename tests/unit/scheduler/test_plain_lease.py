"""The plain lease: steps the engine decodes plainly without asking the scheduler, and what it must not break
(probes on schedule, every step observed, the batch floor, weight changes, realized-check steps)."""

import numpy as np

from rollspec.scheduler import CatchUpCost, DepthConfig, DepthScheduler, sample_num_accepted
from rollspec.scheduler.standing import DUE_PROBE_ASK_STEPS

B = 8
CATCH_UP = CatchUpCost({1: 1e-6, 64: 1e-5})


def _drive(scheduler, device, *, num_steps, alpha, leased, rng, batch_size=lambda step: B):
    """Like the engine: a catch-up that grows by one a plain step (an admission every 13 steps brings a prompt
    of 20) and drops to 1 after drafting; with `leased`, the lease is honoured. Returns (ks, number of asks)."""
    ks, asks, catch_up, lease = [], 0, 20, None
    for step in range(num_steps):
        b = batch_size(step)
        if leased and lease is not None and lease.steps > 0 and b >= lease.min_batch_size:
            lease.steps -= 1
            k = 0
        else:
            asks += 1
            k = scheduler.choose_depth(b, catch_up)
            lease = scheduler.plain_lease() if leased and k == 0 else None
        scheduler.observe(b, k, sample_num_accepted(rng, [alpha] * 8, k, b), k * device.draft_s(b),
                          device.target_s(b, k + 1))
        catch_up = 1 if k else (20 if step % 13 == 0 else catch_up + 1)
        ks.append(k)
    return ks, asks


def test_honouring_the_lease_keeps_the_probes_and_skips_most_asks(synthetic):
    device = synthetic.LinearDevice()
    runs = {}
    for leased in (False, True):
        scheduler = DepthScheduler(DepthConfig(), device.cost_model(), CATCH_UP)
        ks, asks = _drive(scheduler, device, num_steps=3000, alpha=0.1, leased=leased, rng=np.random.default_rng(0))
        runs[leased] = (ks, asks, scheduler.stats)
    (_, asks_asked, asked), (ks_leased, asks_leased, leased) = runs[False], runs[True]
    assert asks_asked == 3000 and asks_leased < 3000 / 8  # the point of it
    assert leased.num_steps == 3000 and leased.num_steps_by_k[0] == ks_leased.count(0)  # every step observed
    assert asked.num_probes >= 10  # probes from plain decoding are exercised (bad acceptance: greedy k stays 0)
    assert abs(leased.num_probes - asked.num_probes) <= 1  # and stay on schedule (due: asked every 4th step)


def test_a_lease_holds_down_to_three_quarters_of_the_batch_and_ends_at_a_weight_change(synthetic):
    device = synthetic.LinearDevice()
    scheduler = DepthScheduler(DepthConfig(), device.cost_model(), CATCH_UP)
    _drive(scheduler, device, num_steps=300, alpha=0.1, leased=False, rng=np.random.default_rng(1),
           batch_size=lambda step: 10)
    assert scheduler.choose_depth(10, 30) == 0
    lease = scheduler.plain_lease()
    assert lease.steps > 8 and lease.min_batch_size == 8  # 4 * 8 >= 3 * 10 > 4 * 7, as StandingChoice.holds
    scheduler.notify_weights_changed()
    assert lease.steps == 0


def test_a_plain_step_the_realized_check_asks_for_gets_no_lease(synthetic):
    device = synthetic.LinearDevice()
    scheduler = DepthScheduler(DepthConfig(), device.cost_model(), CATCH_UP)
    rng = np.random.default_rng(2)
    checks = 0
    for _ in range(2000):  # good acceptance at B = 1: speculating, with a plain step for the check now and then
        k = scheduler.choose_depth(1, 1)
        lease_steps = scheduler.plain_lease().steps if k == 0 else None
        scheduler.observe(1, k, sample_num_accepted(rng, [0.9] * 8, k, 1), k * device.draft_s(1), device.target_s(1, k + 1))
        if scheduler.last_decision.is_check:
            checks += 1
            assert lease_steps == 0
    assert checks >= 3


def test_a_probe_does_not_restart_learning_and_planning_plain_decoding(synthetic):
    # Restarting them after every probe re-learned plain at steps 1, 2, 4, ... and re-planned every 4-30 steps:
    # on the zoo at B = 1 ~10 plans of ~120 us inside the engine per probe.
    device = synthetic.LinearDevice()
    costs = synthetic.CountingCosts(device.cost_model())
    scheduler = DepthScheduler(DepthConfig(), costs, CATCH_UP)
    rng = np.random.default_rng(3)
    _drive(scheduler, device, num_steps=500, alpha=0.1, leased=False, rng=rng)
    before, probes = costs.num_step_s, scheduler.stats.num_probes
    _drive(scheduler, device, num_steps=3000, alpha=0.1, leased=False, rng=rng)
    probes = scheduler.stats.num_probes - probes
    assert probes >= 10
    # Per probe: its plan and observe (two: it is cold), its trial's observes (here cut short by admissions: ~2.5
    # speculative steps a probe), the plan after it and the settle steps' observes; besides, a plan at every
    # admission while a probe is due (the catch-up halves) and every 64 steps, and a learned step in 64.
    # (Restarting: 529 here before trials, 639 with them.)
    assert costs.num_step_s - before <= 3000 / 64 * 2 + 3000 / 13 + probes * 6


def test_while_a_probe_is_due_the_lease_is_short_and_backs_off_while_it_is_not_worth_it(synthetic):
    # A due probe fires at an ask where the catch-up is narrow enough to pay (at B = 1 on the zoo, right after an
    # admission); asking only every 64 steps, the zoo's B = 1 ran 1 probe in 12,000 steps instead of ~40. Where it
    # never pays (B = 4 on the zoo), asking every few steps cost ~2% of a plain step: the wait doubles.
    device = synthetic.LinearDevice()
    scheduler = DepthScheduler(DepthConfig(probe_min_gain=100.0), device.cost_model(), CATCH_UP)  # never worth it
    rng, leases, lease = np.random.default_rng(4), [], None
    for step in range(3000):
        if lease is not None and lease.steps > 0:
            lease.steps -= 1
            k = 0
        else:
            k = scheduler.choose_depth(B, 20 + step % 13)
            lease = scheduler.plain_lease() if k == 0 else None
            leases.append(lease.steps if lease else -1)
        scheduler.observe(B, k, sample_num_accepted(rng, [0.1] * 8, k, B), k * device.draft_s(B), device.target_s(B, k + 1))
    wait = DUE_PROBE_ASK_STEPS
    assert wait - 1 in leases and 2 * wait - 1 in leases  # due: short leases, then longer ones
    assert set(leases[-10:]) <= {4 * wait - 1, 63}, leases  # backed off to the plain re-plan interval


def test_a_draining_batch_at_plain_decoding_is_mostly_quiet_and_recorded_in_full(synthetic):
    # Quiet steps were those at the batch size of the last learned one: a draining batch, which changes size
    # nearly every step, took the full path (~74 us inside the engine) at every step but a few.
    device = synthetic.LinearDevice()
    costs = synthetic.CountingCosts(device.cost_model())
    scheduler = DepthScheduler(DepthConfig(), costs)
    sizes = [64 - i // 2 for i in range(126)] * 3  # three rounds of a batch draining from 64 to 1
    for b in sizes[:20]:
        scheduler.observe(b, 0, [0] * b, 0.0, device.target_s(b, 1))
    before = costs.num_step_s
    for b in sizes:
        scheduler.observe(b, 0, [0] * b, 0.0, device.target_s(b, 1))
    assert costs.num_step_s - before < len(sizes) / 3  # full observes (one cost-model read each); was > 1 / 2
    history = scheduler.history[-len(sizes):]
    assert [d.batch_size for d in history] == sizes and [d.step for d in history] == list(range(20, 20 + len(sizes)))
    assert all(d.predicted_step_s == device.cost_model().target_s(d.batch_size, 1) for d in history[:8])
    stats = scheduler.stats
    assert stats.num_steps == 20 + len(sizes) and stats.num_tokens == sum(sizes[:20]) + sum(sizes)
    assert 0 < scheduler.horizon_steps(1) < 4  # the drain (a row lost every other step) is still seen
