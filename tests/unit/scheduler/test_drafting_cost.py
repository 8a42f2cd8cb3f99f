"""Drafting priced c_draft(B, k) = a(B) + k * b(B): a per-step part beside the per-position one.

The device below is the zoo's draft model at B = 1 (C draft chains): drafting ~110 us a step whatever k,
~5 us more a position; a verify of q tokens 210 + 23 q us. Priced per position alone, steps at k = 1-2 (the
scheduler's probes from plain decoding) teach 60-115 us a position and price k = 4 at 2-4x its cost.
"""

import numpy as np
import pytest

from rollspec.scheduler import DepthConfig, DepthScheduler, sample_num_accepted

ZOO_DRAFT_B1 = dict(target_fixed_s=2.1e-4, target_per_token_s=2.3e-5, draft_fixed_s=5e-6, draft_per_row_s=0.0,
                    draft_step_s=1.1e-4)
ALPHAS = [0.7] * 8


@pytest.mark.parametrize("scale", [1.0, 1.3, 0.8])
def test_steps_at_shallow_depths_price_a_deeper_one_right(synthetic, scale):
    device = synthetic.LinearDevice(**ZOO_DRAFT_B1)
    model = device.cost_model(scale=scale)  # a profile taken under load (1.3) or quieter than now (0.8)
    assert model.drafting_s(1, 4) == pytest.approx(scale * device.drafting_s(1, 4), rel=1e-9)
    for k in [1, 2, 1, 2, 1] * 12:  # probes: true times at k = 1-2 only
        model.observe(1, k, device.drafting_s(1, k), device.target_s(1, k + 1))
    for k in (4, 8):
        assert model.drafting_s(1, k) == pytest.approx(device.drafting_s(1, k), rel=0.03)
    assert model.drafting_s(1, 0) == 0.0
    step = model.step_s(1, 8)
    assert step[4] == pytest.approx(device.step_s(1, 4), rel=0.05)
    assert step[4] == pytest.approx(model.drafting_s(1, 4) + model.target_s(1, 5), rel=1e-12)


def test_the_scheduler_leaves_plain_decoding_after_shallow_probes_and_settles_at_the_best_k(synthetic):
    device = synthetic.LinearDevice(**ZOO_DRAFT_B1)
    true = device.true_rates(1, ALPHAS, 8)
    assert np.argmax(true) in (4, 5) and true.max() > 1.35 * true[0] and true[1] < 1.15 * true[0]
    scheduler = DepthScheduler(DepthConfig(), device.cost_model(scale=1.15))
    rng = np.random.default_rng(0)
    for k in [1, 2] * 6:  # what probes from plain decoding ran on the zoo before the scheduler chose
        scheduler.observe(1, k, sample_num_accepted(rng, ALPHAS, k, 1), device.drafting_s(1, k),
                          device.target_s(1, k + 1))
    decisions = synthetic.run_steps(scheduler, device, alphas=ALPHAS, batch_size=1, num_steps=600, rng=rng,
                                    time_noise=0.05)
    ratio = np.array([true[d.k] for d in decisions[100:]]) / true.max()
    assert ratio.mean() >= 0.95, np.bincount([d.k for d in decisions], minlength=9)
