"""Cost model: interpolation of the start-up profile, extrapolation, and online refinement."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollspec.scheduler import CostConfig, CostModel, ProfileError, batch_bucket, profile_points
from rollspec.scheduler.interpolation import PiecewiseLinear


def _affine_profile(fixed, per_row, per_token, draft_fixed, draft_per_row, max_batch_size=64, k_max=8):
    batch_sizes, qs = profile_points(max_batch_size, k_max)
    target = {(b, q): fixed + per_row * b + per_token * b * q for b in batch_sizes for q in qs}
    return target, {b: draft_fixed + draft_per_row * b for b in batch_sizes}


def test_profile_points_cover_the_ends_and_powers_of_two():
    assert profile_points(100, 8) == ([1, 2, 4, 8, 16, 32, 64, 100], [1, 2, 3, 5, 9])
    assert profile_points(1, 0) == ([1], [1, 2])
    assert profile_points(8, 3) == ([1, 2, 4, 8], [1, 2, 3, 4])


@given(
    st.floats(1e-4, 1e-2), st.floats(0, 1e-4), st.floats(0, 1e-4), st.floats(0, 1e-3), st.floats(0, 1e-5),
    st.integers(1, 500), st.integers(1, 12),
)
@settings(max_examples=200)
def test_exact_everywhere_for_a_device_affine_in_rows_and_tokens(fixed, per_row, per_token, d_fixed, d_row, b, q):
    # Piecewise-linear interpolation and linear extrapolation reproduce an affine device
    # exactly, inside the profiled grid and beyond it (B up to 500 > 64, q up to 12 > 9).
    target, draft = _affine_profile(fixed, per_row, per_token, d_fixed, d_row)
    model = CostModel.from_profile(target, draft)
    assert model.target_s(b, q) == pytest.approx(fixed + per_row * b + per_token * b * q, rel=1e-9)
    assert model.draft_s(b) == pytest.approx(max(d_fixed + d_row * b, 1e-6), rel=1e-9)
    step = model.step_s(b, 8)
    assert step[3] == pytest.approx(3 * model.draft_s(b) + model.target_s(b, 4), rel=1e-12)


def test_holds_left_of_the_smallest_profiled_batch():
    curve = PiecewiseLinear([4, 8], [2.0, 3.0])
    assert np.allclose(curve([1, 4, 6, 8, 12]), [2.0, 2.0, 2.5, 3.0, 4.0])
    assert np.allclose(PiecewiseLinear([4, 8], [3.0, 2.0])([16]), [2.0])  # no negative slope beyond


def test_wider_verify_is_never_predicted_cheaper_even_if_the_profile_says_so():
    target = {(1, 1): 3e-3, (1, 2): 2.5e-3, (1, 3): 3.2e-3, (1, 5): 3.1e-3, (1, 9): 4e-3}
    model = CostModel.from_profile(target, {1: 1e-4})
    by_q = [model.target_s(1, q) for q in range(1, 12)]
    assert all(b >= a for a, b in zip(by_q, by_q[1:]))
    assert model.target_s(1, 2) == 3e-3


@pytest.mark.parametrize(
    "target, draft",
    [
        ({(1, 1): 1e-3, (2, 1): 2e-3}, {1: 0.0}),  # one verify width cannot price speculation
        ({(1, 1): 1e-3, (1, 2): -1.0}, {1: 0.0}),
        ({(1, 1): 1e-3, (1, 2): float("nan")}, {1: 0.0}),
        ({(0, 1): 1e-3, (1, 2): 1e-3}, {1: 0.0}),
        ({(1, 1): 1e-3, (1, 2): 1e-3}, {}),
        ({(1, 1): 1e-3, (1, 2): 1e-3}, {1: float("inf")}),
    ],
)
def test_a_profile_that_cannot_define_costs_is_rejected(target, draft):
    with pytest.raises(ProfileError):
        CostModel.from_profile(target, draft)


def _observe(model, rng, b, k, target_true, draft_true, n, noise=0.0):
    for _ in range(n):
        jitter = np.exp(rng.normal(0, noise, 2)) if noise else np.ones(2)
        model.observe(b, k, k * draft_true * jitter[0], target_true * jitter[1])


def test_online_refinement_converges_to_measured_times_and_shares_drift_across_q():
    target, draft = _affine_profile(3e-3, 0, 2e-5, 3e-4, 0)
    model = CostModel.from_profile(target, draft, CostConfig(correction_rate=0.1))
    rng = np.random.default_rng(0)
    true_target = 1.5 * model.target_s(16, 3)
    true_draft = 2.0 * model.draft_s(16)
    q1_before, q9_before, other_bucket = model.target_s(16, 1), model.target_s(16, 9), model.target_s(64, 3)
    _observe(model, rng, 16, 2, true_target, true_draft, 150, noise=0.05)
    assert model.target_s(16, 3) == pytest.approx(true_target, rel=0.05)
    assert model.draft_s(16) == pytest.approx(true_draft, rel=0.05)
    # A slowdown seen at q = 3 carries to the wider verify widths of the same bucket, none to plain decoding
    # (q = 1: verify overheads are not its), none to other buckets.
    assert model.target_s(16, 9) / q9_before > 1.3
    assert model.target_s(16, 1) == pytest.approx(q1_before)
    assert model.target_s(64, 3) == other_bucket
    assert batch_bucket(16) == batch_bucket(31) != batch_bucket(32)


def test_one_stalled_step_moves_the_model_by_a_bounded_factor():
    target, draft = _affine_profile(3e-3, 0, 2e-5, 3e-4, 0)
    config = CostConfig(correction_rate=0.1, max_log_error=0.5)
    model = CostModel.from_profile(target, draft, config)
    before = model.target_s(8, 2)
    model.observe(8, 1, 1e-4, 100 * before)
    assert model.target_s(8, 2) / before == pytest.approx(np.exp(2 * 0.1 * 0.5), rel=1e-9)


def test_a_free_drafter_profile_learns_its_real_cost():
    target, _ = _affine_profile(3e-3, 0, 2e-5, 0, 0)
    model = CostModel.from_profile(target, {1: 0.0, 64: 0.0})
    rng = np.random.default_rng(1)
    _observe(model, rng, 4, 4, model.target_s(4, 5), 2e-5, 200)
    assert model.draft_s(4) == pytest.approx(2e-5, rel=0.05)


def test_online_corrections_never_make_a_wider_verify_cheaper():
    target, draft = _affine_profile(3e-3, 0, 2e-5, 3e-4, 0)
    model = CostModel.from_profile(target, draft)
    for _ in range(100):  # q = 3 keeps measuring at a fraction of its profile
        model.observe(16, 2, 2e-4, 0.3 * target[(16, 3)])
    by_q = [model.target_s(16, q) for q in range(1, 10)]
    assert all(b >= a for a, b in zip(by_q, by_q[1:])), by_q


def test_an_unobserved_wider_verify_borrows_the_correction_of_the_widest_observed_one():
    target, draft = _affine_profile(3e-3, 0, 2e-5, 3e-4, 0)
    model = CostModel.from_profile(target, draft, CostConfig(correction_rate=0.1))
    base_q9, base_q1 = model.target_s(16, 9), model.target_s(16, 1)
    _observe(model, np.random.default_rng(0), 16, 2, 0.5 * model.target_s(16, 3), model.draft_s(16), 150)
    # All of a profile error seen at q = 3 reaches the wider q = 9, only its shared half reaches q = 1.
    assert model.target_s(16, 9) / base_q9 == pytest.approx(0.5, rel=0.05)
    assert 0.6 < model.target_s(16, 1) / base_q1 < 0.8
    # Once q = 9 runs, its own measurements take over.
    _observe(model, np.random.default_rng(1), 16, 8, base_q9, model.draft_s(16), 150)
    assert model.target_s(16, 9) == pytest.approx(base_q9, rel=0.05)
    assert model.target_s(16, 3) / base_q9 < 0.6 * model.target_s(16, 9) / base_q9 * 1.2


def test_a_plain_step_error_lends_nothing_to_verify_widths_not_yet_run():
    target, draft = _affine_profile(1e-3, 0, 5e-4, 3e-4, 0)  # token-bound: no width is clamped up to q = 1's
    model = CostModel.from_profile(target, draft, CostConfig(correction_rate=0.1))
    q2_before = model.target_s(16, 2)
    model.observe(16, 4, 4 * model.draft_s(16), model.target_s(16, 5))  # width 5 runs as predicted
    _observe(model, np.random.default_rng(0), 16, 0, 2.0 * model.target_s(16, 1), 0.0, 100)
    # Plain decoding at 2x moved q = 1 and, through the shared part, every width by about half of it; the
    # width q = 2 below the first run one does not also borrow q = 1's own correction.
    assert model.target_s(16, 1) == pytest.approx(2.0 * target[(16, 1)], rel=0.02)
    assert model.target_s(16, 2) / q2_before == pytest.approx(model.target_s(16, 9) / target[(16, 9)], rel=0.02)


def test_prices_read_between_corrections_are_never_stale():
    """step_s is cached between corrections: a model read before every observation of every kind prices as one
    given the same observations and read only at the end, bit for bit (a cache one kind of observation did not
    invalidate would lag), and target_s(B, 1), computed apart, is step_s's plain price to the bit."""
    target, draft = _affine_profile(1e-3, 2e-5, 1e-5, 1e-4, 1e-6)
    read, ops = CostModel.from_profile(target, draft), []
    rng = np.random.default_rng(0)
    for i in range(40):
        b, k = int(rng.choice([1, 3, 16])), int(rng.integers(0, 5)) if i % 7 else 0
        d, t = [float(x) for x in rng.uniform(1e-4, 3e-3, size=2)]
        if i % 5 == 4 and k > 0:  # (b, k) observed, then a steady run folded in
            new = [("observe", b, k, 0.0, 1e-3), ("observe_steady", b, k, [d, d], [t, t])]
        else:
            new = [("observe", b, k, d, t)]
        for name, *args in new:
            for bb in (1, 3, 16):
                read.step_s(bb, 8), read.target_s(bb, 1)
            getattr(read, name)(*args)
        ops += new
        fresh = CostModel.from_profile(target, draft)
        for name, *args in ops:
            getattr(fresh, name)(*args)
        for bb in (1, 3, 16):
            assert read.step_s(bb, 8).tolist() == fresh.step_s(bb, 8).tolist()
            assert read.target_s(bb, 1) == fresh.target_s(bb, 1) == fresh.step_s(bb, 8)[0]  # plain's price, one way


def test_profiled_costs_price_what_the_engine_profile_measured():
    from rollspec.engine.profiling import CostProfile
    from rollspec.scheduler import profiled_costs

    target = {(b, q): 1e-3 * b + 2e-4 * q for b in (1, 4) for q in (1, 2, 3)}
    profile = CostProfile(target_s=target, draft_s={1: 5e-5, 4: 8e-5}, catch_up_s={1: 1e-5, 4: 3e-5},
                          draft_fixed_s={1: 1e-4, 4: 2e-4})
    cost, catch_up = profiled_costs(profile)
    assert cost.step_s(4, 2) == pytest.approx([target[(4, 1)], 2e-4 + 8e-5 + target[(4, 2)],
                                               2e-4 + 2 * 8e-5 + target[(4, 3)]])
    assert catch_up.catch_up_s(4, 10) == pytest.approx(3e-4)
    # Without a per-step part drafting is priced per position alone; without a catch-up none is priced.
    bare, no_catch_up = profiled_costs(CostProfile(target_s=target, draft_s={1: 5e-5, 4: 8e-5}))
    assert bare.drafting_s(4, 2) == pytest.approx(2 * 8e-5)
    assert no_catch_up.catch_up_s(4, 10) < 1e-7


def _plain_then_speculation(model, target, k, load, num_steps, b=4):
    """Plain steps at B = b calibrate plain's price at the profile's times, 100 speculative steps at depth k run at the
    profile's times, then `num_steps` more at `load` times them (half observed one by one, half folded in as a steady
    run)."""
    for _ in range(10):
        model.observe(b, 0, 0.0, target[(b, 1)])
    drafting = model.drafting_s(b, k)
    for n, scale in ((100, 1.0), (num_steps, load)):
        for _ in range(n // 2):
            model.observe(b, k, scale * drafting, scale * target[(b, k + 1)])
        model.observe_steady(b, k, [scale * drafting] * (n // 2), [scale * target[(b, k + 1)]] * (n // 2))


def test_plain_follows_a_load_change_seen_only_by_a_long_run_of_speculative_steps():
    # Zoo, EAGLE at B = 4: speculating for thousands of steps, plain measured only at its start, the co-tenants' load
    # moved every step by ~15%; with plain's price frozen the plan put k = 4-8 at 0.85-0.95x plain where they ran
    # 1.01-1.14x. Here the load moves both alike: their ratio stays the profile's.
    target, draft = _affine_profile(5e-4, 1e-5, 2e-5, 1e-4, 0)
    for load in (1.25, 1 / 1.25):
        model = CostModel.from_profile(target, draft)
        _plain_then_speculation(model, target, 4, load, 400)
        assert model.target_s(4, 5) / model.target_s(4, 1) == pytest.approx(target[(4, 5)] / target[(4, 1)], rel=0.03)
    # The first speculative steps after plain was measured (a trial where plain stands: 8) correct the plan's prices.
    model = CostModel.from_profile(target, draft)
    for _ in range(10):
        model.observe(4, 0, 0.0, target[(4, 1)])
    for _ in range(16):
        model.observe(4, 4, model.drafting_s(4, 4), 1.25 * target[(4, 5)])
    assert model.target_s(4, 1) == pytest.approx(target[(4, 1)], rel=1e-9)
