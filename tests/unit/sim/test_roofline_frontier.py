"""The roofline's regimes and the frontier where speculation stops paying."""

import numpy as np
import pytest

from rollspec.sim.frontier import speculation_frontier
from rollspec.sim.hardware import GpuSpec, ModelSpec, SpecError
from rollspec.sim.roofline import RooflineCost

H100 = GpuSpec(name="H100", hbm_bytes_per_s=3.35e12, flops_per_s=989e12, bandwidth_efficiency=0.75,
               flops_efficiency=0.6)
DENSE_8B = ModelSpec(name="8b", num_params=8e9, num_active_params=8e9, num_layers=36, num_heads=32, num_kv_heads=8,
                     head_dim=128, bytes_per_param=2, kv_bytes_per_value=2)
HEAD = ModelSpec(name="head", num_params=0.4e9, num_active_params=0.4e9, num_layers=1, num_heads=32, num_kv_heads=8,
                 head_dim=128, bytes_per_param=2, kv_bytes_per_value=2)
MOE = ModelSpec(name="moe", num_params=235e9, num_active_params=22e9, num_layers=94, num_heads=64, num_kv_heads=4,
                head_dim=128, bytes_per_param=2, kv_bytes_per_value=2, num_experts=128, experts_per_token=8,
                num_expert_params=227e9)


def _cost(target=DENSE_8B, context=0.0):
    cost = RooflineCost(target=target, draft=HEAD, gpu=H100, num_gpus=1, target_overhead_s=0.0, draft_overhead_s=0.0)
    cost.set_context(context, context)
    return cost


def test_a_memory_bound_verify_costs_about_a_decode_and_a_compute_bound_one_scales_with_q():
    cost = _cost()
    assert not cost.is_compute_bound(1, 4) and cost.target_s(1, 4) == pytest.approx(cost.target_s(1, 1))
    assert cost.is_compute_bound(1024, 4)
    assert cost.target_s(1024, 8) == pytest.approx(2 * cost.target_s(1024, 4), rel=1e-6)
    # A batch-1 decode streams the weights once: 16 GB at 75% of 3.35 TB/s.
    assert cost.target_s(1, 1) == pytest.approx(16e9 / (0.75 * 3.35e12))


def test_kv_reads_make_long_context_decode_memory_bound_again():
    short, long = _cost(context=0.0), _cost(context=8000.0)
    assert short.is_compute_bound(256, 4) and not long.is_compute_bound(256, 4)
    assert long.target_s(256, 1) > 3 * short.target_s(256, 1)


def test_a_moe_verify_wakes_more_experts_than_a_decode_at_small_batch():
    cost = _cost(MOE)
    assert cost.target_s(1, 4) > 2.5 * cost.target_s(1, 1)
    # At large batch every expert is read anyway, so width is cheap again.
    assert cost.target_s(512, 2) < 1.2 * cost.target_s(512, 1)


def test_bad_specs_name_the_bad_value():
    with pytest.raises(SpecError, match="bandwidth_efficiency"):
        GpuSpec(name="x", hbm_bytes_per_s=1e12, flops_per_s=1e15, bandwidth_efficiency=1.5, flops_efficiency=0.5)
    with pytest.raises(SpecError, match="active params"):
        ModelSpec(name="x", num_params=1e9, num_active_params=2e9, num_layers=1, num_heads=1, num_kv_heads=1,
                  head_dim=1, bytes_per_param=2, kv_bytes_per_value=2)


@pytest.fixture(scope="module")
def frontier():
    return speculation_frontier(_cost(context=200.0), k=3, k_max=8, context_tokens=200.0,
                                batch_sizes=np.array([1, 4, 16, 64, 256, 1024]),
                                acceptance_lengths=np.linspace(1.0, 4.0, 13))


def test_frontier_speedup_grows_with_acceptance_length_at_every_batch_size(frontier):
    assert np.all(np.diff(frontier.fixed_speedup, axis=0) > 0)
    assert np.all(np.diff(frontier.adaptive_speedup, axis=0) >= -1e-12)


def test_speculation_stops_paying_at_large_batch_and_low_acceptance(frontier):
    low, high = 1, -1  # acceptance length 1.25 and 4.0
    assert frontier.fixed_speedup[low, -1] < 1.0 < frontier.fixed_speedup[high, 0]
    assert frontier.break_even_batch(1.25) < frontier.break_even_batch(4.0)
    # Batch 1 is weight-bound: verify width is free, each draft costs its weights (0.4B of 8B): 4 / (1 + 3 * 0.05).
    assert frontier.fixed_speedup[high, 0] == pytest.approx(4.0 / (1 + 3 * 0.4 / 8.0), rel=0.01)


def test_adaptive_depth_never_loses_and_never_trails_fixed_depth(frontier):
    assert np.all(frontier.adaptive_speedup >= 1.0)
    assert np.all(frontier.adaptive_speedup >= frontier.fixed_speedup - 1e-12)
    assert np.all(frontier.best_k[frontier.fixed_speedup < 0.999] <= 3)
