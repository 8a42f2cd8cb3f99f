"""Drafter catch-up in the depth policy: priced when leaving plain decoding and when probing from it,
charged per step while admissions recur, learned online apart from the drafting cost."""

import numpy as np
import pytest

from rollspec.scheduler import CatchUpCost, DepthConfig, DepthScheduler, ProfileError, excess_tokens
from rollspec.scheduler import depth as depth_module

# LinearDevice at B = 64, k = 4 and acceptance 0.9 is ~58% faster than plain decoding; a catch-up of
# this cost per token of width (2 ms at B = 64) and 40 tokens wide costs ~16 plain steps.
CATCH_UP = {1: 1e-5, 64: 2e-3}
B = 64


def _established(synthetic, catch_up, k_max=4, **config):
    """A scheduler that has seen acceptance 0.9 at depth k_max for a while; its greedy depth is still 0."""
    device = synthetic.LinearDevice()
    scheduler = DepthScheduler(DepthConfig(k_max=k_max, **config), device.cost_model(k_max=k_max), catch_up)
    rng = np.random.default_rng(0)
    from rollspec.scheduler import sample_num_accepted
    for _ in range(20):
        scheduler.observe(B, k_max, sample_num_accepted(rng, [0.9] * k_max, k_max, B),
                          k_max * device.draft_s(B), device.target_s(B, k_max + 1))
    return device, scheduler


def test_excess_width_is_what_a_steady_step_would_not_catch_up():
    assert excess_tokens(6, 4).tolist() == [0, 4, 3, 2, 1]
    assert excess_tokens(2, 3).tolist() == [0, 0, 0, 0]


def test_cost_interpolates_in_batch_size_and_learns_the_measured_time():
    cost = CatchUpCost({1: 1e-4, 9: 9e-4})
    assert cost.catch_up_s(5, 10) == pytest.approx(5e-3)
    assert cost.catch_up_s(5, 0) == 0.0
    for _ in range(100):
        cost.observe(5, 10, 1e-2)
    assert cost.catch_up_s(5, 10) == pytest.approx(1e-2, rel=0.02)
    assert CatchUpCost.none().catch_up_s(128, 50) < 1e-6


@pytest.mark.parametrize("profile", [{}, {0: 1e-3}, {4: -1.0}, {4: float("nan")}])
def test_a_bad_catch_up_profile_is_rejected(profile):
    with pytest.raises(ProfileError):
        CatchUpCost(profile)


@pytest.mark.parametrize(("width", "catch_up", "leaves"), [
    (3, CATCH_UP, True),  # nothing beyond a steady step's width to catch up
    (40, CATCH_UP, False),  # the catch-up spread over the horizon eats the gain
    (40, None, True),  # the same step without the catch-up model: it would leave
])
def test_leaving_plain_decoding_pays_for_the_catch_up(synthetic, width, catch_up, leaves):
    _, scheduler = _established(synthetic, CatchUpCost(catch_up) if catch_up else None)
    assert (scheduler.choose_depth(B, width) > 0) is leaves


def test_a_longer_horizon_amortizes_the_same_catch_up(synthetic):
    _, short = _established(synthetic, CatchUpCost(CATCH_UP), catch_up_horizon_steps=8)
    _, long = _established(synthetic, CatchUpCost(CATCH_UP), catch_up_horizon_steps=64)
    assert short.choose_depth(B, 40) == 0 and long.choose_depth(B, 40) > 0


def _step(scheduler, device, k, width, rng):
    """One engine step at depth k whose drafter catches up `width` tokens per row first."""
    from rollspec.scheduler import sample_num_accepted
    excess = max(0, width - k - 1) if k else 0
    draft = k * device.draft_s(B) + excess * CATCH_UP[64]
    scheduler.observe(B, k, sample_num_accepted(rng, [0.9] * 4, k, B), draft, device.target_s(B, k + 1))


def test_one_admission_while_speculating_does_not_send_it_back_to_plain(synthetic):
    # Without the realized check: its first plain step (no plain step measured yet) would come here.
    device, scheduler = _established(synthetic, CatchUpCost(CATCH_UP), check_realized=False)
    rng = np.random.default_rng(1)
    k = scheduler.choose_depth(B, 2)
    assert k > 0
    _step(scheduler, device, k, 2, rng)
    k = scheduler.choose_depth(B, 2)
    _step(scheduler, device, k, 2, rng)
    # A row admitted with a 40-token prompt: stepping down would only defer (and grow) its catch-up.
    assert scheduler.choose_depth(B, 40) == k


@pytest.mark.parametrize("recurring", [True, False])
def test_catch_up_that_recurs_every_step_is_charged_to_speculation(synthetic, monkeypatch, recurring):
    if not recurring:
        monkeypatch.setattr(depth_module, "RECURRING_RATE", 0.0)
    device, scheduler = _established(synthetic, CatchUpCost(CATCH_UP), probe_interval_steps=10**6)
    rng = np.random.default_rng(2)
    ks = []
    for step in range(30):  # rows are admitted with 40-token prompts at every step
        k = scheduler.choose_depth(B, 2 if step == 0 else 40)
        _step(scheduler, device, k, 2 if step == 0 else 40, rng)
        ks.append(k)
    assert ks[0] > 0
    # Speculating here costs ~16 plain steps of catch-up per step: with the rule it stops within a few steps.
    assert (ks[-10:] == [0] * 10) is recurring


@pytest.mark.parametrize(("width", "probes"), [(40, False), (0, True)])
def test_a_probe_from_plain_decoding_pays_the_whole_catch_up(synthetic, width, probes):
    device = synthetic.LinearDevice()
    catch_up = CatchUpCost({1: 1e-5, 64: 5e-4})  # 40 wide: ~4.5 plain steps, under the horizon's 8
    scheduler = DepthScheduler(DepthConfig(k_max=4), device.cost_model(k_max=4), catch_up)
    rng = np.random.default_rng(3)
    from rollspec.scheduler import sample_num_accepted
    for _ in range(20):  # position 1 never accepts: the greedy depth stays 0, deeper positions are untried
        scheduler.observe(B, 1, sample_num_accepted(rng, [0.0] * 4, 1, B), device.draft_s(B), device.target_s(B, 2))
    scheduler._probe._last_scheduled[:] = -10**6  # every position overdue for a probe
    assert (scheduler.choose_depth(B, width) > 0) is probes


def test_a_catch_up_step_trains_the_catch_up_model_not_the_drafting_cost(synthetic):
    device = synthetic.LinearDevice()
    scheduler = DepthScheduler(DepthConfig(k_max=4), device.cost_model(k_max=4), CatchUpCost(CATCH_UP))
    draft_before = scheduler.cost_model.draft_s(B)
    catch_up_before = scheduler.catch_up.per_token_s(B)
    scheduler.choose_depth(B, 40)
    # The catch-up took twice its prediction; drafting took exactly its own.
    scheduler.observe(B, 1, [0] * B, device.draft_s(B) + 2 * 38 * catch_up_before, device.target_s(B, 2))
    assert scheduler.cost_model.draft_s(B) == pytest.approx(draft_before)
    assert scheduler.catch_up.per_token_s(B) > 1.05 * catch_up_before
    decision = scheduler.last_decision
    assert decision.catch_up_tokens == 40
    assert decision.predicted_catch_up_s == pytest.approx(38 * catch_up_before)
    assert decision.predicted_step_s == pytest.approx(device.step_s(B, 1) + 38 * catch_up_before, rel=1e-6)


@pytest.mark.parametrize(("sizes", "leaves"), [
    ([22] * 8, True),  # a full batch (admissions refill it): the catch-up is spread over the horizon
    ([64, 64, 50, 36, 22], False),  # losing ~14 rows a step: ~2 steps left to pay the catch-up back
])
def test_a_draining_batch_near_its_end_stays_plain(synthetic, sizes, leaves):
    device = synthetic.LinearDevice()
    scheduler = DepthScheduler(DepthConfig(k_max=4), device.cost_model(k_max=4), CatchUpCost(CATCH_UP))
    rng = np.random.default_rng(4)
    from rollspec.scheduler import sample_num_accepted
    for size in [64] * 20:  # acceptance 0.9 established; the greedy depth is still 0
        scheduler.observe(size, 4, sample_num_accepted(rng, [0.9] * 4, 4, size), 4 * device.draft_s(size),
                          device.target_s(size, 5))
    for size in sizes:
        scheduler.observe(size, 0, [0] * size, 0.0, device.target_s(size, 1))
    assert (scheduler.horizon_steps(22) == 8.0) is leaves
    assert (scheduler.choose_depth(22, 40) > 0) is leaves


def test_the_rows_lost_since_the_last_step_already_shorten_the_horizon(synthetic):
    device = synthetic.LinearDevice()
    scheduler = DepthScheduler(DepthConfig(k_max=4), device.cost_model(k_max=4), CatchUpCost(CATCH_UP))
    for _ in range(5):
        scheduler.observe(51, 0, [0] * 51, 0.0, device.target_s(51, 1))
    assert scheduler.horizon_steps(51) == 8.0
    assert scheduler.horizon_steps(29) < 8.0  # 22 rows finished in the step just observed


def test_a_draining_batch_counts_its_remaining_steps_at_half_weight(synthetic):
    # Losing 10 rows a step, 40 rows end in ~4 steps holding ~20 rows on average: 2 full-batch steps.
    device = synthetic.LinearDevice()
    scheduler = DepthScheduler(DepthConfig(k_max=4), device.cost_model(k_max=4), CatchUpCost(CATCH_UP))
    for size in range(200, 40, -10):
        scheduler.observe(size, 0, [0] * size, 0.0, device.target_s(size, 1))
    assert scheduler.horizon_steps(40) == pytest.approx(2.0, rel=0.02)


def test_half_of_a_catch_up_miss_reaches_other_batch_sizes():
    cost = CatchUpCost({1: 1e-4, 64: 1e-3})
    small_before, other_before = cost.per_token_s(8), cost.per_token_s(2)
    for _ in range(200):
        cost.observe(8, 10, 2 * 10 * small_before)
    assert cost.per_token_s(8) == pytest.approx(2 * small_before, rel=0.02)
    assert cost.per_token_s(2) / other_before == pytest.approx(2 ** 0.5, rel=0.05)


def _probe_gaps(synthetic, width, per_token_s=2e-4, b=1, num_steps=1500):
    """Steps from the end of one burst of k > 0 steps (a probe, deeper probes, steps until position 1 has
    evidence) to the next probe, at plain decoding with a catch-up of `width` tokens priced as it costs."""
    device = synthetic.LinearDevice()
    scheduler = DepthScheduler(DepthConfig(k_max=4, check_realized=False), device.cost_model(k_max=4),
                               CatchUpCost({1: per_token_s}))
    rng = np.random.default_rng(0)
    from rollspec.scheduler import sample_num_accepted
    probes, last_k = [], 0
    for step in range(num_steps):  # position 1 never accepts: plain decoding throughout, but for probes
        offered = width if last_k == 0 else 0  # the drafter catches up at a probe; its trial's steps are steady
        k = scheduler.choose_depth(b, offered)
        if k:
            probes.append(step)
        catch_up_s = max(0, offered - k - 1) * per_token_s if k else 0.0
        last_k = k
        scheduler.observe(b, k, sample_num_accepted(rng, [0.0] * 4, k, b), k * device.draft_s(b) + catch_up_s,
                          device.target_s(b, k + 1))
    starts = [s for s in probes if s - 1 not in probes]
    ends = [s for s in probes if s + 1 not in probes]
    return [start - end for start, end in zip(starts[1:], ends)]


def test_probes_from_plain_decoding_are_spaced_by_what_their_catch_up_costs(synthetic):
    # A probe pays the whole catch-up; probes from plain decoding cost at most PROBE_BUDGET of its time. On the
    # zoo at B = 1 a probe every 128 steps paid ~2 plain steps of catch-up each (~1.6%).
    interval = DepthConfig().probe_interval_steps
    free, dear = _probe_gaps(synthetic, width=0), _probe_gaps(synthetic, width=30, num_steps=2000)
    assert len(free) >= 5 and interval <= min(free) <= max(free) <= interval + 2, free
    # 28 tokens of catch-up at 0.2 ms (~2 plain steps) and the trial's steady steps, predicted to lose: over 2 plain
    # steps a probe, so the interval grows past twice the plain one (a 40-token catch-up is not worth a probe at all).
    # The first gap follows the start's burst, not a probe's trial.
    assert len(dear) >= 3 and 2 * interval < min(dear) and max(dear[1:]) - min(dear[1:]) <= 2, dear


def test_probes_from_plain_decoding_are_budgeted_at_what_they_realize():
    # On the zoo (EAGLE, B = 1-4) probes from plain took ~1.9x their predicted time (catch-up and first drafting
    # steps cold after a plain stretch): budgeted at the prediction, they spent ~2% of plain's time, not 1%.
    from rollspec.scheduler.probe import ProbePlanner
    step_s = np.array([1e-3, 4e-3, 4.5e-3, 5e-3, 5.5e-3])  # a probe's catch-up included
    expected = np.array([1.0, 1.6, 2.0, 2.2, 2.3])

    def due(slowdown, steady_s=step_s[0]):
        planner = ProbePlanner(DepthConfig(k_max=4))
        planner.scheduled(4, step=-1)  # the last probe: at step 0
        for _ in range(10):
            planner.observe_from_plain(slowdown * step_s[1], step_s[1])
        planner.depth(0, expected / np.r_[step_s[0], np.full(4, steady_s)], step_s, expected, step=0)
        return planner.plain_due_step

    # The trial's steady steps at k = 1 as fast per step as plain decoding (1.6x its tokens/s): they lose nothing.
    assert due(1.0) == pytest.approx(300, abs=2)  # (4 - 1) ms over 1% of 1 ms
    assert due(2.0) == pytest.approx(700, abs=2)  # (2 * 4 - 1) ms
    # At 2 ms a step they lose 2 - 1.6 x 1 ms each against plain: 7 of them add 2.8 ms.
    assert due(1.0, steady_s=2e-3) == pytest.approx(580, abs=2)
