"""A draining batch at plain decoding: the plans its drops of rows call for take the drain's shortcut without a full
plan, its last rows (near their ends) do not leave plain decoding, and a batch that stops draining where speculation
pays switches to it within a few steps."""

import numpy as np

import rollspec.scheduler.depth as depth_module
from rollspec.scheduler import CatchUpCost, DepthConfig, DepthScheduler, sample_num_accepted

ALPHAS = [0.8] * 8
# A steady batch of 64 for 200 steps, then a drain losing a quarter of its rows every 2 steps down to 1.
DRAIN = [b for b in (48, 36, 27, 21, 16, 12, 9, 7, 6, 5, 4, 3, 2) for _ in range(2)] + [1] * 40
ROUND = [64] * 200 + DRAIN


class _Engine:
    """Drives a scheduler as the engine does: the plain lease honoured, every step observed on `device`."""

    def __init__(self, scheduler, device, alphas, seed, catch_up=1):
        self.scheduler, self.device, self.alphas = scheduler, device, alphas
        self.rng, self.lease, self.catch_up = np.random.default_rng(seed), None, catch_up

    def step(self, b):
        """This step's k at batch size b, and whether the scheduler was asked for it."""
        lease = self.lease
        asked = not (lease is not None and lease.steps > 0 and b >= lease.min_batch_size)
        if asked:
            k = self.scheduler.choose_depth(b, self.catch_up)
            self.lease = self.scheduler.plain_lease() if k == 0 else None
        else:
            lease.steps -= 1
            k = 0
        self.scheduler.observe(b, k, sample_num_accepted(self.rng, self.alphas, k, b), self.device.drafting_s(b, k),
                               self.device.target_s(b, k + 1))
        self.catch_up = 1 if k else self.catch_up + 1
        return k, asked


def _run_rounds(synthetic, monkeypatch, rounds):
    """Drive like the engine (honouring the plain lease); per round, the batch size of every full plan in the
    drain and the drain step of the first speculative step."""
    plans: list[int] = []
    batch = [0]
    full_plan = depth_module.hysteresis_depth  # called once per full plan, after the drain's shortcut
    monkeypatch.setattr(depth_module, "hysteresis_depth", lambda *a, **kw: plans.append(batch[0]) or full_plan(*a, **kw))
    # Speculation pays below B ~ 16 before its catch-up, below B = 4 with it (horizon of a drain).
    device = synthetic.LinearDevice(target_fixed_s=1e-3, target_per_token_s=1.5e-4, draft_fixed_s=1e-4,
                                    draft_per_row_s=1e-5)
    engine = _Engine(DepthScheduler(DepthConfig(), device.cost_model(), CatchUpCost({1: 2e-6, 64: 2e-5})), device,
                     ALPHAS, seed=0)
    out = []
    for _ in range(rounds):
        ks = []
        for i, b in enumerate(ROUND):
            batch[0] = b
            if i == 200:
                plans.clear()
            ks.append(engine.step(b)[0])
        out.append((list(plans), next((i for i, k in enumerate(ks[200:]) if k), None)))
    return out


def test_a_draining_plain_batch_switches_where_speculation_pays_without_a_full_plan_per_drop(synthetic, monkeypatch):
    # While it drains, plain stands (speculating on the last rows lost on the zoo: DrainStand); held at B = 1 it
    # stops draining, and within ~6 steps its horizon is back (before: within 10 steps of B < 4, while draining).
    held = DRAIN.index(1)
    for plans, first_speculative in _run_rounds(synthetic, monkeypatch, rounds=3)[1:]:  # the first round calibrates
        assert first_speculative is not None and held <= first_speculative <= held + 10, first_speculative
        # 11 drops of a quarter of the rows from B = 48 to 4 (five buckets): 4-5 full plans each before
        assert sum(b >= 4 for b in plans) <= 1, plans


# The zoo's draining batch (bench.scheduler's draining-64): 64 rows at once, no refill, gone in ~20 steps.
ZOO_DRAIN = [64] * 5 + [60, 53, 51, 51, 29, 22, 18, 13, 13, 13, 13, 13, 13, 5, 2, 1]


def test_a_drain_where_plain_wins_at_every_batch_size_asks_a_few_times_a_round(synthetic):
    # Each drop of a quarter of the rows asked again (a plan or the drain's shortcut, ~100-300 us inside the engine
    # on the zoo, ~8 a round there: ~1.5% of the drain); plain checked down to the rows it still wins at stands there.
    device = synthetic.LinearDevice()  # acceptance 0.1: plain wins at every batch size, catch-up or not
    scheduler = DepthScheduler(DepthConfig(), device.cost_model(), CatchUpCost({1: 2e-6, 64: 2e-5}))
    engine, asks = _Engine(scheduler, device, [0.1] * 8, seed=0), []
    for _ in range(12):
        engine.catch_up = 20  # the prompts, admitted with the round
        asks.append(sum(engine.step(b)[1] for b in ZOO_DRAIN))
    stats = scheduler.stats
    assert stats.num_steps_by_k[0] >= stats.num_steps - 8 * stats.num_probes  # plain but for a probe's trial
    assert max(asks[4:]) <= 3, asks  # 8 a round when each drop of a quarter of the rows asked again


def test_the_last_rows_of_a_drain_do_not_leave_plain_decoding(synthetic):
    # On the zoo's drain the draft model's steps on the last 1-3 rows (a 35-token catch-up, rows a token or two from
    # their end) took 1-2.8 ms for 2-4 tokens where a plain step took ~0.6 ms for 1-3: predicted 1.8-3x plain there.
    device = synthetic.LinearDevice(target_fixed_s=1e-3, target_per_token_s=1.5e-4, draft_fixed_s=1e-4,
                                    draft_per_row_s=1e-5)  # speculation would pay below B = 4 with its catch-up
    engine = _Engine(DepthScheduler(DepthConfig(), device.cost_model(), CatchUpCost({1: 2e-6, 64: 2e-5})), device,
                     ALPHAS, seed=1)
    drain = [64] * 5 + [48, 36, 27, 20, 15, 11, 8, 6, 5, 4, 3, 3, 2, 2, 1, 1, 1]  # ends: no row holds on
    tails = []
    for _ in range(8):
        engine.catch_up = 20
        tails.append(sum(engine.step(b)[0] > 0 and b < 8 for b in drain))
    assert tails[2:] == [0] * 6, tails  # 5-9 speculative steps a round on the last rows before
