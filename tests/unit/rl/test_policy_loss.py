"""The policy loss: gradient sign, exact clipping, masking, truncated IS, KL and stats."""

import math

import pytest
import torch

from rollspec.rl.config import PolicyLossConfig, RlConfigError
from rollspec.rl.kl import k3_kl
from rollspec.rl.policy_loss import PolicyLossInputError, policy_loss

CONFIG = PolicyLossConfig(clip_eps_low=0.2, clip_eps_high=0.28, tis_cap=2.0)


def _grad_of(logprobs, behaviour, advantages, mask=None, config=CONFIG, **kwargs):
    logprobs = logprobs.clone().requires_grad_(True)
    mask = torch.ones_like(logprobs) if mask is None else mask
    loss, stats = policy_loss(logprobs, behaviour, advantages, mask, config, **kwargs)
    loss.backward()
    return logprobs.grad, loss, stats


@pytest.mark.parametrize("advantage", [1.0, -1.0])
def test_sgd_step_moves_the_sampled_tokens_logprob_with_the_advantage(advantage):
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11, requires_grad=True)
    tokens = torch.randint(0, 11, (2, 5))

    def sampled_logprobs():
        return torch.log_softmax(logits, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)

    before = sampled_logprobs().detach()
    loss, _ = policy_loss(sampled_logprobs(), before, torch.full((2,), advantage), torch.ones(2, 5), CONFIG)
    loss.backward()
    with torch.no_grad():
        logits -= 0.5 * logits.grad
    change = sampled_logprobs().detach() - before
    assert (torch.sign(change) == math.copysign(1.0, advantage)).all(), change


def test_clipping_engages_exactly_beyond_epsilon():
    delta = 1e-3
    # ratios just inside and just outside each clip edge, as log(pi_new) - log(mu)
    ratios = torch.tensor([[1.28 - delta, 1.28 + delta, 0.8 + delta, 0.8 - delta, 0.5, 1.9]])
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0, 1.0, -1.0]])
    behaviour = torch.zeros(1, 6)
    grad, _, stats = _grad_of(ratios.log(), behaviour, advantages)
    is_live = grad != 0
    # inside: live; past 1 + eps_high with A > 0 or below 1 - eps_low with A < 0: clipped (zero grad);
    # pessimistic side (A > 0 with small ratio, A < 0 with large ratio): never clipped
    assert is_live.tolist() == [[True, False, True, False, True, True]]
    assert stats["clip_fraction"].item() == pytest.approx(2 / 6)
    # d/dlogp of -(r A) / N is -r A / N on live tokens
    assert torch.allclose(grad[is_live], -(ratios * advantages)[is_live] / 6)


def test_negative_advantage_ratio_is_truncated_at_the_cap_without_proximal():
    ratios = torch.tensor([[1.9, 2.1, 50.0]])
    grad, loss, stats = _grad_of(ratios.log(), torch.zeros(1, 3), torch.tensor([-1.0]))
    assert (grad != 0).tolist() == [[True, False, False]]
    assert loss.item() == pytest.approx((1.9 + 2.0 + 2.0) / 3, rel=1e-5)
    assert stats["truncated_fraction"].item() == pytest.approx(2 / 3)


def test_decoupled_weight_is_truncated_and_detached():
    proximal = torch.log(torch.tensor([[1.0, 1.0]]))
    behaviour = torch.log(torch.tensor([[2.0, 0.1]]))  # pi_prox / mu = 0.5 and 10
    grad, _, stats = _grad_of(proximal.clone(), behaviour, torch.tensor([1.0]), proximal_logprobs_BT=proximal)
    # at pi_new == pi_prox the ratio is 1: gradient is -w A / N with w = min(pi_prox / mu, cap)
    assert torch.allclose(grad, torch.tensor([[-0.5 / 2, -2.0 / 2]]))
    assert stats["truncated_fraction"].item() == 0.5
    assert stats["is_weight_mean"].item() == pytest.approx(1.25)


def test_proximal_logprobs_are_constants_even_if_they_carry_grad():
    # One optimizer step per batch: the proximal policy is the current one, and a caller may
    # pass the very tensor it differentiates. The ratio must still be 1 with gradient 1.
    # The second token's weight pi_prox / mu = 5 is truncated to 2; behaviour with grad must get none.
    logprobs = torch.log(torch.tensor([[0.5, 0.25]])).requires_grad_(True)
    behaviour = torch.log(torch.tensor([[0.5, 0.05]])).requires_grad_(True)
    loss, _ = policy_loss(logprobs, behaviour, torch.tensor([1.0]), torch.ones(1, 2), CONFIG,
                          proximal_logprobs_BT=logprobs)
    loss.backward()
    assert torch.allclose(logprobs.grad, torch.tensor([[-1.0 / 2, -2.0 / 2]]))
    assert behaviour.grad is None


def test_decoupled_equals_behaviour_only_when_proximal_is_the_behaviour_policy():
    torch.manual_seed(1)
    logprobs, behaviour = -torch.rand(3, 4), -torch.rand(3, 4)
    advantages = torch.tensor([1.0, -0.5, 2.0])
    grad_a, loss_a, _ = _grad_of(logprobs, behaviour, advantages)
    grad_b, loss_b, _ = _grad_of(logprobs, behaviour, advantages, proximal_logprobs_BT=behaviour)
    assert torch.allclose(loss_a, loss_b) and torch.allclose(grad_a, grad_b)


def test_masked_positions_change_nothing_and_tokens_weigh_equally():
    logprobs = torch.log(torch.tensor([[0.5, 0.2, 0.3], [0.4, 0.9, 0.1]]))
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    advantages = torch.tensor([1.0, -1.0])
    grad, loss, stats = _grad_of(logprobs, logprobs, advantages, mask)
    # ratio 1 everywhere: token mean of -A over 4 real tokens = -(1 - 3) / 4
    assert loss.item() == pytest.approx(0.5)
    assert stats["num_tokens"].item() == 4
    assert torch.equal(grad[~mask], torch.zeros(2))
    assert torch.allclose(grad[mask], torch.tensor([-0.25, 0.25, 0.25, 0.25]))

    garbage = logprobs.clone()
    garbage[~mask] = torch.tensor([-50.0, 7.0])
    advantages_BT = advantages[:, None].repeat(1, 3)
    advantages_BT[0, 1:] = 1e6
    _, loss_garbage, _ = _grad_of(garbage, logprobs, advantages_BT, mask)
    assert loss_garbage.item() == pytest.approx(loss.item())


def test_num_tokens_overrides_the_denominator():
    logprobs = torch.zeros(2, 3)
    _, loss, _ = _grad_of(logprobs, logprobs, torch.tensor([1.0, 1.0]))
    _, loss_global, _ = _grad_of(logprobs, logprobs, torch.tensor([1.0, 1.0]), num_tokens=12)
    assert loss.item() == pytest.approx(-1.0) and loss_global.item() == pytest.approx(-0.5)


def test_kl_is_zero_for_equal_policies_and_positive_otherwise():
    logprobs = torch.log(torch.tensor([[0.5, 0.2, 0.9]]))
    config = PolicyLossConfig(kl_coef=0.1)
    _, loss, stats = _grad_of(logprobs, logprobs, torch.tensor([0.0]), config=config, ref_logprobs_BT=logprobs)
    assert stats["kl"].item() == 0.0 and loss.item() == 0.0
    ref = torch.log(torch.tensor([[0.4, 0.3, 0.5]]))
    grad, loss, stats = _grad_of(logprobs, logprobs, torch.tensor([0.0]), config=config, ref_logprobs_BT=ref)
    expected_kl = k3_kl(logprobs, ref).mean()
    assert stats["kl"].item() > 0 and loss.item() == pytest.approx(0.1 * expected_kl.item())
    # k3 pulls log pi toward log pi_ref: gradient sign = sign(logp - ref)
    assert torch.equal(torch.sign(grad), torch.sign(logprobs - ref))


def test_k3_matches_exact_kl_in_expectation():
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.2, 0.6])
    estimate = (p * k3_kl(p.log(), q.log())).sum()  # E_{x~p}[k3]
    assert estimate.item() == pytest.approx((p * (p / q).log()).sum().item(), rel=1e-5)
    assert (k3_kl(torch.randn(100), torch.randn(100)) >= 0).all()


def test_entropy_stat_and_behaviour_kl():
    logprobs = torch.full((2, 3), -math.log(7))
    _, _, stats = _grad_of(logprobs, logprobs, torch.ones(2), logits_BTV=torch.zeros(2, 3, 7))
    assert stats["entropy"].item() == pytest.approx(math.log(7), rel=1e-6)
    assert stats["behaviour_kl"].item() == 0.0 and stats["ratio_mean"].item() == pytest.approx(1.0)
    assert all(not v.requires_grad and v.dim() == 0 for v in stats.values())


def test_bad_inputs_and_configs_raise():
    x = torch.zeros(2, 3)
    with pytest.raises(PolicyLossInputError, match=r"behaviour_logprobs has shape \(2, 4\)"):
        policy_loss(x, torch.zeros(2, 4), torch.zeros(2), x, CONFIG)
    with pytest.raises(PolicyLossInputError, match="advantages"):
        policy_loss(x, x, torch.zeros(3), x, CONFIG)
    with pytest.raises(PolicyLossInputError, match="ref_logprobs"):
        policy_loss(x, x, torch.zeros(2), x, PolicyLossConfig(kl_coef=0.1))
    with pytest.raises(RlConfigError, match="tis_cap"):
        PolicyLossConfig(tis_cap=1.1)
    with pytest.raises(RlConfigError, match="clip_eps_low"):
        PolicyLossConfig(clip_eps_low=1.0)
