"""How long a plain choice stands: re-planned often while plain's price at a batch size is being learned, up to
PLAIN_REPLAN_STEPS once it is calibrated there, and a steady batch's tail moving the bucket does not undo that."""

import numpy as np

from rollspec.scheduler import CatchUpCost, DepthConfig, DepthScheduler, sample_num_accepted
from rollspec.scheduler.plain_run import PlainRun

CATCH_UP = CatchUpCost({1: 1e-6, 64: 1e-5})
# Rounds like a steady benchmark run's: B = 16 for 100 steps, then the tail drains it to 1.
ROUND = [16] * 100 + list(range(15, 0, -1))


def _asks_per_round(scheduler, device, rounds, rng):
    """Drive like the engine, honouring the plain lease; the number of asks (choose_depth calls) at B = 16 in
    each round."""
    asks, lease, catch_up = [], None, 20
    for _ in range(rounds):
        asks.append(0)
        for b in ROUND:
            if lease is not None and lease.steps > 0 and b >= lease.min_batch_size:
                lease.steps -= 1
                k = 0
            else:
                asks[-1] += b == 16
                k = scheduler.choose_depth(b, catch_up)
                lease = scheduler.plain_lease() if k == 0 else None
            scheduler.observe(b, k, sample_num_accepted(rng, [0.05] * 8, k, b), k * device.draft_s(b),
                              device.target_s(b, k + 1))
            catch_up = 1 if k else catch_up + 1
    return asks


def test_a_calibrated_plain_choice_stands_long_across_the_tails_of_steady_runs(synthetic):
    device = synthetic.LinearDevice()
    # Probes are never worth it here (margin), so only the plain stand decides how often the engine asks.
    scheduler = DepthScheduler(DepthConfig(probe_min_gain=100.0), device.cost_model(), CATCH_UP)
    asks = _asks_per_round(scheduler, device, rounds=6, rng=np.random.default_rng(0))
    stats = scheduler.stats
    assert stats.num_steps_by_k[0] >= 0.99 * stats.num_steps  # plain (the tail at B = 1-2 may try a step)
    assert asks[0] >= 6  # learning plain's price at B = 16: re-planned at 1, 2, 3, 4, 6, 9, ... steps
    assert max(asks[-3:]) <= 3, asks  # calibrated: about 100 / 64 asks a round (8 when every tail restarted it)


def _observe(run, batch_size, num_steps):
    for _ in range(num_steps):
        if not run.is_quiet(batch_size, 0, 1e-3):
            run.learned(batch_size, 0, is_probe=False)


def test_the_count_restarts_in_a_bucket_not_yet_calibrated():
    run = PlainRun(settle_steps=0)
    _observe(run, 16, 40)
    assert run.num_counted == 40  # calibrated at B = 16: the whole run counts
    _observe(run, 100, 3)
    assert run.num_counted == 3  # B = 100's bucket is new: its own steps only
