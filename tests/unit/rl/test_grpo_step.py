"""The learner's log-probs match the engine's, the GRPO loss moves the policy the right way, and
splitting a batch across ranks and micro-batches does not change its gradient."""

import copy
import dataclasses

import pytest
import torch

from rollspec.engine.config import EngineConfig
from rollspec.engine.engine import Engine
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.models.random_models import random_decoder, tiny_config
from rollspec.rl.config import PolicyLossConfig, RlConfigError
from rollspec.rl.grpo_step import GrpoLossConfig, PolicyLogits, grpo_loss, token_logprobs
from rollspec.rl.trajectory_batch import RolloutSample, build_batch

CFG = tiny_config(vocab_size=40)


def trainable(seed=0, std=0.3):
    return PolicyLogits(random_decoder(CFG, seed=seed, std=std).train().requires_grad_(True))


def _reward(completion) -> float:
    """Differs within every group whatever the sampled tokens (a length-based reward was all-equal
    for some sampling streams, which zeroes every advantage and so every gradient)."""
    return int(completion.request_id.split("-")[1]) % 2 + 0.1 * (len(completion.token_ids) % 3)


def rollouts(model, temperature, num_prompts=3, group_size=4, max_new_tokens=12):
    engine = Engine(model.decoder, EngineConfig(max_batch_size=16, max_seq_len=64))
    params = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens, stop_token_ids=(2,))
    requests = [Request(request_id=f"{p}-{i}", prompt_ids=(1, 5 + p, 7, 3), params=params, group_id=str(p))
                for p in range(num_prompts) for i in range(group_size)]
    with torch.no_grad():
        completions = engine.generate(requests)
    return [RolloutSample(prompt_token_ids=c.prompt_ids, token_ids=c.token_ids, logprobs=c.logprobs,
                          reward=_reward(c), group_id=c.group_id, policy_version=0)
            for c in completions]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_equal_the_engines(temperature):
    model = trainable()
    batch = build_batch(rollouts(model, temperature))
    assert batch.num_tokens > 20
    with torch.no_grad():
        got = token_logprobs(model, batch, temperature)
    mask = batch.response_mask_BT.bool()
    torch.testing.assert_close(got[mask], batch.behaviour_logprobs_BT[mask], atol=1e-5, rtol=1e-5)
    assert (got[:, -1] == 0).all()  # the last position predicts nothing


def test_token_logprobs_detect_a_misalignment():
    model = trainable()
    batch = build_batch(rollouts(model, 1.0))
    with torch.no_grad():
        got = token_logprobs(model, batch, 1.0)
    mask = batch.response_mask_BT.bool()
    shifted = torch.roll(batch.behaviour_logprobs_BT, 1, dims=1)
    assert not torch.allclose(got[mask], shifted[mask], atol=1e-3)


def sequence_logprob(model, prompt, completion):
    batch = build_batch([RolloutSample(prompt_token_ids=prompt, token_ids=completion, logprobs=[0.0] * len(completion),
                                       reward=0.0, group_id="x", policy_version=0)])
    with torch.no_grad():
        return float((token_logprobs(model, batch) * batch.response_mask_BT).sum())


def test_sgd_on_grpo_loss_raises_the_probability_of_high_advantage_completions():
    model = trainable(std=0.1)
    prompt, good, bad = [1, 6, 7, 3], [9, 10, 11, 2], [12, 13, 2]
    before_good, before_bad = sequence_logprob(model, prompt, good), sequence_logprob(model, prompt, bad)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(10):
        # On-policy: behaviour log-probs are the current model's.
        samples = [RolloutSample(prompt_token_ids=prompt, token_ids=c, logprobs=[0.0] * len(c), reward=r,
                                 group_id="g", policy_version=0) for c, r in [(good, 1.0), (bad, 0.0)] * 2]
        batch = build_batch(samples)
        with torch.no_grad():
            current = token_logprobs(model, batch)
        batch = dataclasses.replace(batch, behaviour_logprobs_BT=current * batch.response_mask_BT)
        loss, stats = grpo_loss(model, batch, GrpoLossConfig())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after_good, after_bad = sequence_logprob(model, prompt, good), sequence_logprob(model, prompt, bad)
    assert after_good > before_good + 1.0
    assert after_bad < before_bad - 1.0


def gradients(model, loss):
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("world_size, micro_batch_size", [(2, 2), (3, 1), (1, 5)])
def test_split_micro_batches_reproduce_the_full_batch_gradient(world_size, micro_batch_size):
    model = trainable(std=0.1)
    batch = build_batch(rollouts(model, 1.0))
    config = GrpoLossConfig()
    # Perturb behaviour log-probs so importance weights differ from 1 and the test sees them.
    stale = batch.behaviour_logprobs_BT - 0.3 * batch.response_mask_BT * torch.linspace(0, 1, batch.input_ids_BT.shape[1])
    batch = dataclasses.replace(batch, behaviour_logprobs_BT=stale)
    full = gradients(model, grpo_loss(model, batch, config)[0])
    # Data parallelism: each rank sums its micro-batch gradients; ranks are averaged.
    accumulated = torch.zeros_like(full)
    for shard in batch.split(world_size, micro_batch_size):
        for micro in shard:
            accumulated += gradients(model, grpo_loss(model, micro, config)[0]) / world_size
    torch.testing.assert_close(accumulated, full, atol=1e-6, rtol=1e-5)
    assert full.abs().max() > 1e-4


def stale_batch(model):
    batch = build_batch(rollouts(model, 1.0))
    with torch.no_grad():
        current = token_logprobs(model, batch)
    mask = batch.response_mask_BT
    offsets = torch.linspace(-1.5, 1.5, mask.numel()).reshape(mask.shape)
    return dataclasses.replace(batch, behaviour_logprobs_BT=(current + offsets) * mask), current


def test_decoupled_objective_weights_tokens_by_truncated_importance_ratio():
    model = trainable(std=0.1)
    batch, current = stale_batch(model)
    mask = batch.response_mask_BT
    cap = 2.0
    config = GrpoLossConfig(policy_loss=PolicyLossConfig(tis_cap=cap))
    _, stats = grpo_loss(model, batch, config)
    weights = (current - batch.behaviour_logprobs_BT).exp().clamp(max=cap)
    expected = (weights * mask).sum() / mask.sum()
    torch.testing.assert_close(stats["is_weight_mean"], expected, atol=1e-5, rtol=1e-5)
    assert stats["ratio_mean"] == pytest.approx(1.0) and stats["clip_fraction"] == 0
    assert 0 < stats["truncated_fraction"] < 1


def test_decoupled_and_behaviour_objectives_agree_on_policy():
    model = trainable(std=0.1)
    batch, current = stale_batch(model)
    on_policy = dataclasses.replace(batch, behaviour_logprobs_BT=current * batch.response_mask_BT)
    decoupled = gradients(model, grpo_loss(model, on_policy, GrpoLossConfig(decoupled=True))[0])
    behaviour = gradients(model, grpo_loss(model, on_policy, GrpoLossConfig(decoupled=False))[0])
    torch.testing.assert_close(decoupled, behaviour, atol=1e-7, rtol=1e-5)
    stale_decoupled = gradients(model, grpo_loss(model, batch, GrpoLossConfig(decoupled=True))[0])
    assert not torch.allclose(stale_decoupled, decoupled, atol=1e-6)


def test_kl_penalty_against_a_reference_model():
    model = trainable(std=0.1)
    batch, _ = stale_batch(model)
    config = GrpoLossConfig(policy_loss=PolicyLossConfig(kl_coef=0.5))
    same_loss, same_stats = grpo_loss(model, batch, config, ref_model=copy.deepcopy(model))
    no_kl_loss, _ = grpo_loss(model, batch, GrpoLossConfig())
    assert same_stats["kl"] == 0
    torch.testing.assert_close(same_loss, no_kl_loss)
    other_loss, other_stats = grpo_loss(model, batch, config, ref_model=trainable(seed=5, std=0.1))
    assert other_stats["kl"] > 0
    torch.testing.assert_close(other_loss, no_kl_loss + 0.5 * other_stats["kl"], atol=1e-6, rtol=1e-5)


def test_entropy_stat_is_of_the_predicting_positions():
    model = trainable()
    batch = build_batch(rollouts(model, 1.0))
    _, stats = grpo_loss(model, batch, GrpoLossConfig())
    with torch.no_grad():
        logp = torch.log_softmax(model(batch.input_ids_BT), dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)
    mask = batch.response_mask_BT
    torch.testing.assert_close(stats["entropy"], (entropy * mask).sum() / mask.sum(), atol=1e-5, rtol=1e-5)


def test_temperature_must_be_positive():
    with pytest.raises(RlConfigError, match="temperature must be a finite float > 0"):
        GrpoLossConfig(temperature=0.0)
