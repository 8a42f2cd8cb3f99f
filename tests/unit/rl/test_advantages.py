"""Group advantages, checked by hand on small groups."""

import math

import pytest
import torch

from rollspec.rl.advantages import AdvantageInputError, group_advantages
from rollspec.rl.config import AdvantageConfig, RlConfigError

MEAN_ONLY = AdvantageConfig(scale_by_std=False)


def test_grpo_normalizes_by_group_mean_and_population_std():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    # Row 1: mean 0.5, std 0.5. Row 2: mean 0.25, std sqrt(0.25 * 0.75).
    s = math.sqrt(0.1875)
    expected = torch.tensor([[1.0, -1.0, -1.0, 1.0], [0.75 / s, -0.25 / s, -0.25 / s, -0.25 / s]])
    assert torch.allclose(group_advantages(rewards), expected, atol=1e-5)


def test_mean_only_is_dr_grpo():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [3.0, 1.0, 2.0, 2.0]])
    expected = torch.tensor([[0.75, -0.25, -0.25, -0.25], [1.0, -1.0, 0.0, 0.0]])
    assert torch.equal(group_advantages(rewards, config=MEAN_ONLY), expected)


@pytest.mark.parametrize("config", [AdvantageConfig(), MEAN_ONLY])
def test_groups_with_equal_rewards_get_exactly_zero(config):
    # In float64, 0.1 and 0.7 are inexact: the group mean is off by an ulp and the naive
    # (r - mean) / (std + eps) comes out around 1e-11, not 0.
    rewards = torch.tensor([[0.1, 0.1, 0.1], [0.7, 0.7, 0.7], [0.0, 0.0, 0.0], [0.3, 0.7, 0.3]], dtype=torch.float64)
    advantages = group_advantages(rewards, config=config)
    assert torch.equal(advantages[:3], torch.zeros(3, 3, dtype=torch.float64))
    assert advantages[3, 1] > 0 > advantages[3, 0]


def test_each_group_sums_to_zero_and_keeps_reward_order():
    rewards = torch.rand(16, 8, generator=torch.Generator().manual_seed(0))
    advantages = group_advantages(rewards)
    assert torch.allclose(advantages.sum(dim=1), torch.zeros(16), atol=1e-5)
    assert torch.equal(advantages.argsort(dim=1), rewards.argsort(dim=1))
    assert torch.allclose(advantages.std(dim=1, unbiased=False), torch.ones(16), atol=1e-4)


def test_ragged_groups_by_id_match_hand_values():
    rewards = torch.tensor([1.0, 0.0, 5.0, 5.0, 5.0, 2.0, 0.0, 3.0])
    group_ids = torch.tensor([7, 7, 3, 3, 3, 9, 4, 4])
    expected = torch.tensor([1.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 1.0])  # lone member of group 9 -> 0
    assert torch.allclose(group_advantages(rewards, group_ids), expected, atol=1e-5)
    expected_mean_only = torch.tensor([0.5, -0.5, 0.0, 0.0, 0.0, 0.0, -1.5, 1.5])
    assert torch.equal(group_advantages(rewards, group_ids, MEAN_ONLY), expected_mean_only)


def test_ragged_and_rectangular_agree_and_dtypes():
    rewards = torch.tensor([[1, 0, 1], [0, 0, 1]])  # integer rewards come back as float32
    flat = group_advantages(rewards.flatten().float(), torch.tensor([0, 0, 0, 1, 1, 1]))
    assert group_advantages(rewards).dtype == torch.float32
    assert torch.allclose(group_advantages(rewards).flatten(), flat)
    assert group_advantages(rewards.double()).dtype == torch.float64


def test_bad_inputs_raise():
    with pytest.raises(AdvantageInputError, match="finite"):
        group_advantages(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(AdvantageInputError, match="num_groups"):
        group_advantages(torch.tensor([1.0, 0.0]))
    with pytest.raises(AdvantageInputError, match=r"\(2,\) and \(3,\)"):
        group_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0, 1]))
    with pytest.raises(RlConfigError, match="eps"):
        AdvantageConfig(eps=0.0)
