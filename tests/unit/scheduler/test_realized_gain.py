"""Speculation that measured faster than plain decoding stays (or starts), whatever the plan predicts (RealizedGain)."""

import numpy as np
import pytest

from rollspec.scheduler import CatchUpCost, DepthConfig, DepthScheduler, RealizedConfig, sample_num_accepted
from rollspec.scheduler.realized_gain import RealizedGain

B, K_MAX = 4, 8
CATCH_UP_PER_TOKEN_S = 2e-5  # ~3% of a plain step per token of excess width: leaving plain must clear start_gain


def _device(synthetic):
    """B = 4 shaped like the zoo's EAGLE there: plain 0.59 ms a step, k = 4 1.67 ms (the drafter's call dear)."""
    return synthetic.LinearDevice(target_fixed_s=5.5e-4, target_per_token_s=1e-5, draft_fixed_s=8e-5,
                                  draft_per_row_s=0.0, draft_step_s=6e-4)


def _run(scheduler, device, alphas, *, num_steps, seed):
    """Steps at B with the drafter's catch-up as the engine offers it: the tokens emitted since it last drafted
    (capped at 32, as prompts bound it), paid by the first speculative step after plain ones. Returns the k's."""
    rng = np.random.default_rng(seed)
    ks, since_draft = [], 1
    for _ in range(num_steps):
        k = scheduler.choose_depth(B, since_draft)
        noise = np.exp(rng.normal(0.0, 0.05, size=2))
        excess = max(0, since_draft - k - 1) if k else 0
        draft_s = (device.drafting_s(B, k) + excess * CATCH_UP_PER_TOKEN_S) * noise[0]
        accepted = sample_num_accepted(rng, alphas, k, B)
        scheduler.observe(B, k, accepted, draft_s, device.target_s(B, k + 1) * noise[1])
        since_draft = int(accepted.max()) + 1 if k else min(32, since_draft + 1)
        ks.append(k)
    return np.array(ks)


def _scheduler(device, **config):
    return DepthScheduler(DepthConfig(**config), device.cost_model(max_batch_size=8),
                          CatchUpCost({1: CATCH_UP_PER_TOKEN_S, 8: CATCH_UP_PER_TOKEN_S}))


@pytest.mark.parametrize("seed", range(4))
def test_a_gain_under_start_gain_is_taken_once_trials_measure_it(synthetic, seed):
    # k = 4 is 8% faster than plain: the plan, exact or not, never predicts the 15% start_gain asks, so from plain
    # only trials' steps could tell; without RealizedGain every seed sat at plain for > 80% of steps 1000-6000.
    alphas = [0.75] * K_MAX
    device = _device(synthetic)
    true = device.true_rates(B, alphas, K_MAX) / device.true_rates(B, alphas, K_MAX)[0]
    assert 1.06 < true[4] < 1.10 and true.max() < 1.10 and true[1] < 0.8
    ks = _run(_scheduler(device), device, alphas, num_steps=6000, seed=seed)
    assert (ks[3000:] > 0).mean() > 0.95
    assert np.mean(true[ks[3000:]]) > 1.05
    plain_runs = [run for run in "".join("1" if k else "0" for k in ks[3000:]).split("1") if run]
    assert max(map(len, plain_runs)) <= 2  # it stays: plain steps are the realized check's, one or two at a time


def test_a_trial_that_measures_slower_leaves_plain_decoding_standing(synthetic):
    # The same device where speculation loses (k = 3-4 at ~0.92x plain): trials measure it, and nothing starts.
    alphas = [0.67] * K_MAX
    device = _device(synthetic)
    true = device.true_rates(B, alphas, K_MAX) / device.true_rates(B, alphas, K_MAX)[0]
    assert true[1:].max() < 0.95
    for seed in range(3):
        scheduler = _scheduler(device, probe_min_gain=0.0)  # probes (and their trials) as often as their budget allows
        ks = _run(scheduler, device, alphas, num_steps=6000, seed=seed)
        assert scheduler.stats.num_probes >= 10
        assert (ks[500:] > 0).mean() < 0.05  # trials (8 steps each) and no more than a few steps after one
        assert np.mean(true[ks[500:]]) > 0.99


def _gain(**config):
    return RealizedGain(RealizedConfig(**config))


EXPECTED = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5]  # the plan's E[tokens | k]: acceptance 0.5 a position (drafts: k / 2)


def test_realized_tokens_per_s_is_a_ratio_of_sums_per_depth():
    gain = _gain(min_steps=4)
    gain.observe_run(0, 1, 0, [1] * 8, [1e-3] * 8)  # plain: 1,000 tokens/s
    # k = 1, a token or two a step: 1.25 a step in 1.1 ms, 1,136 tokens/s (a mean of per-step logs: 1,041)
    gain.observe_run(8, 1, 1, [1, 1, 1, 2] * 2, [1.1e-3] * 8)
    assert gain.gain(1, 1, 16, EXPECTED[1]) == pytest.approx(np.log(1.25 / 1.1), abs=0.02)
    assert gain.gain(1, 2, 16, EXPECTED[2]) is None  # no evidence about k = 2
    assert gain.gain(1, 1, 16 + RealizedConfig().veto_steps + 1, EXPECTED[1]) is None  # old evidence
    gain.observe_run(16, 1, 2, [3] * 3, [1e-3] * 3)
    assert gain.gain(1, 2, 19, EXPECTED[2]) is None  # fewer than min_steps


def test_evidence_measured_under_acceptance_the_plan_no_longer_sees_does_not_count():
    gain = _gain(min_steps=4)
    gain.observe_run(0, 1, 0, [1] * 8, [1e-3] * 8)
    gain.observe_run(8, 1, 4, [4] * 8, [2e-3] * 8)  # 3 drafts accepted a step: 2x plain's tokens/s
    assert gain.faster_depth(1, 16, [1.0, 1.9, 2.7, 3.4, 3.9]) == 4  # the plan expects 2.9 drafts
    assert gain.faster_depth(1, 16, [1.0, 1.1, 1.1, 1.1, 1.1]) == 0  # 0.1: acceptance dropped since
    assert gain.gain(1, 4, 16, 3.9) is not None  # not forgotten: not measured behind


def test_plain_becomes_the_depth_measured_fastest_if_ahead_and_depths_not_ahead_are_forgotten():
    gain = _gain(min_steps=4)
    gain.observe_run(0, 4, 0, [4] * 8, [1e-3] * 8)
    gain.observe_run(8, 4, 5, [5] * 7, [1e-3 * 5 / 4 / 0.99] * 7)  # 1% behind
    gain.observe_run(15, 4, 3, [5] * 7, [1e-3 * 5 / 4 / 1.02] * 7)  # 2% ahead
    gain.observe_run(22, 4, 4, [5] * 7, [1e-3 * 5 / 4 / 1.06] * 7)  # 6% ahead
    assert gain.faster_depth(4, 30, EXPECTED) == 4
    assert gain.faster_depth(16, 30, EXPECTED) == 0  # nothing measured at this batch size
    assert gain.gain(4, 5, 30, EXPECTED[5]) is None  # forgotten: a new trial must measure it
    assert gain.gain(4, 3, 30, EXPECTED[3]) > 0
    gain.observe_run(29, 4, 4, [5] * 128, [1e-3 * 5 / 4 / 0.97] * 128)  # k = 4 falls behind
    assert gain.faster_depth(4, 160, EXPECTED) == 3
    assert not gain.is_ahead(4, 4, 160, EXPECTED) and gain.gain(4, 4, 160, EXPECTED[4]) is None


def test_plain_measured_before_a_stretch_that_fell_behind_is_measured_afresh_once():
    gain = _gain(min_steps=4, min_gap=0.03)
    gain.observe_run(0, 4, 0, [4] * 8, [1e-3] * 8)  # plain under a light load
    gain.observe_run(8, 4, 4, [5] * 8, [1e-3 * 5 / 4 / 0.95] * 8)  # k = 4 under a heavier one: 5% behind
    assert gain.faster_depth(4, 16, EXPECTED) == 0
    assert gain.gain(4, 4, 16, EXPECTED[4]) is None  # no plain evidence now
    gain.observe_run(16, 4, 0, [4] * 8, [1.1e-3] * 8)  # plain under the heavier load: k = 4 4.5% ahead of it
    assert gain.faster_depth(4, 24, EXPECTED) == 4
    gain.observe_run(24, 4, 0, [4] * 64, [1.03e-3] * 64)  # plain 3% slower only: k = 4 2% behind it, forgotten
    assert gain.faster_depth(4, 88, EXPECTED) == 0 and gain.gain(4, 4, 88, EXPECTED[4]) is None


def test_disabled_with_the_realized_check():
    gain = RealizedGain(RealizedConfig(min_steps=1), enabled=False)
    gain.observe_run(0, 4, 0, [4] * 8, [1e-3] * 8)
    gain.observe_run(8, 4, 4, [12] * 8, [1e-3] * 8)
    assert gain.faster_depth(4, 16, EXPECTED) == 0 and not gain.is_ahead(4, 4, 16, EXPECTED)
