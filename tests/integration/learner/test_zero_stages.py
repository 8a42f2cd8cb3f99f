"""Two learner ranks in Ray actors train a tiny model with real DeepSpeed ZeRO stages 1, 2 and 3 on
CPU: the loss goes down, fp32 losses are identical across stages, the result equals single-process
training, ZeRO-3 really shards yet gathers the full weights, published weights reach a subscriber,
and a checkpoint restores the run exactly.

One Ray session for the module; each stage's group runs once (cached in `runs`) and the tests
assert on what it recorded. Groups run one after another: each takes both Ray CPUs.
"""

import dataclasses
from pathlib import Path

import pytest
import torch

from rollspec.actors.learner import LearnerCheckpointError, LearnerInputError
from rollspec.actors.learner_config import LearnerConfig
from rollspec.actors.learner_group import LearnerBatchError, LearnerGroup
from rollspec.engine.config import EngineConfig
from rollspec.engine.engine import Engine
from rollspec.engine.loader import load_model
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.engine.weights import native_to_hf
from rollspec.models.random_models import random_decoder, tiny_config
from rollspec.rl.config import PolicyLossConfig
from rollspec.rl.grpo_step import GrpoLossConfig, PolicyLogits, grpo_loss
from rollspec.rl.vocab import BOS_ID, SEP_ID
from rollspec.transport import NO_SECURITY, RunKeys, SecurityConfig, WeightSubscriber

STEPS = 4
CHECKPOINT_AFTER = 2
TAG = "after-2"
CLIENT_STATE = {"controller_step": 2, "leases": ["p1", "p2"]}


def learner_config(stage: int, **overrides) -> LearnerConfig:
    fields = dict(zero_stage=stage, lr=1e-3, num_ranks=2, cpus_per_rank=1.0, micro_batch_size=2, grad_clip=1.0,
                  weight_decay=0.01, seed=0, setup_timeout_s=300.0, call_timeout_s=120.0)
    return LearnerConfig(**{**fields, **overrides})


@dataclasses.dataclass
class StageRun:
    """What one stage's group did and saw."""

    losses: list[float]
    grad_norms: list[float]
    numel: list[dict[str, int]]
    published: dict[str, torch.Tensor]
    received: tuple[int, dict[str, torch.Tensor]] | None
    received_in_plaintext: tuple[int, dict[str, torch.Tensor]] | None
    final_weights: dict[str, torch.Tensor]
    checkpoint_dir: Path
    non_loopback: list[str]


def run_stage(stage: int, model_dir: str, batch, checkpoint_dir: Path, loopback_check) -> StageRun:
    # Stage 1 publishes the way a run does: CURVE and signed manifests with the run's keys.
    keys = RunKeys.create() if stage == 1 else None
    publisher = SecurityConfig(curve="on", keys=keys.for_role("learner")) if keys else NO_SECURITY
    subscriber_security = SecurityConfig(curve="on", keys=keys.for_role("rollout")) if keys else NO_SECURITY
    with LearnerGroup(model_dir, learner_config(stage), publisher_security=publisher) as group:
        subscriber = WeightSubscriber(group.publisher_address, security=subscriber_security)
        try:
            losses, grad_norms = [], []
            for step in range(STEPS):
                stats = group.train_step(batch)
                losses.append(stats["loss"])
                grad_norms.append(stats["grad_norm"])
                if step == 0:
                    group.publish(1)
                    published = group.full_weights()
                    received = subscriber.wait_for(1, timeout_s=30.0)
                    plain = WeightSubscriber(group.publisher_address) if keys else None
                    received_in_plaintext = plain.wait_for(1, timeout_s=3.0) if plain else None
                    if plain:
                        plain.close()
                if step + 1 == CHECKPOINT_AFTER:
                    group.save_checkpoint(checkpoint_dir, TAG, CLIENT_STATE)
            final_weights = group.full_weights()
            numel = group.parameter_numel()  # after steps: persistent parameters stay gathered from the first forward
            non_loopback = loopback_check()
        finally:
            subscriber.close()
    return StageRun(losses, grad_norms, numel, published, received, received_in_plaintext, final_weights, checkpoint_dir, non_loopback)


@pytest.fixture(scope="module")
def runs(ray_session, model_dir, fixed_batch, tmp_path_factory, loopback_check):
    cache: dict[int, StageRun] = {}

    def get(stage: int) -> StageRun:
        if stage not in cache:
            checkpoint_dir = tmp_path_factory.mktemp(f"ckpt-zero{stage}")
            cache[stage] = run_stage(stage, model_dir, fixed_batch, checkpoint_dir, loopback_check)
        return cache[stage]

    return get


def reference_training(model_dir: str, batch, config: LearnerConfig, steps: int):
    """The same optimization in one process without DeepSpeed: whole batch, torch AdamW, clipping."""
    model = PolicyLogits(load_model(model_dir).model.train().requires_grad_(True))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas, eps=config.eps,
                                  weight_decay=config.weight_decay)
    losses, grad_norms = [], []
    for _ in range(steps):
        loss, _ = grpo_loss(model, batch, config.loss)
        optimizer.zero_grad()
        loss.backward()
        grad_norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)))
        optimizer.step()
        losses.append(loss.item())
    return losses, grad_norms, {name: t.detach().clone() for name, t in native_to_hf(model.decoder).items()}


@pytest.fixture(scope="module")
def reference(model_dir, fixed_batch):
    return reference_training(model_dir, fixed_batch, learner_config(1), STEPS)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_each_stage_trains_with_loss_going_down(runs, stage):
    losses = runs(stage).losses
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert losses[-1] < losses[0] - 0.1


def test_fp32_losses_identical_across_stages(runs):
    first, second, third = runs(1).losses, runs(2).losses, runs(3).losses
    # Same weights, same data: the first loss is bit-identical. Afterwards the stages sum micro-batch
    # gradients in different orders (stage 1 all-reduces the accumulated sum, stages 2 and 3
    # reduce-scatter each micro-batch), so the weights, and the losses, differ by float32 rounding.
    assert first[0] == second[0] == third[0]
    torch.testing.assert_close(second, first, atol=2e-7, rtol=1e-6)
    torch.testing.assert_close(third, first, atol=2e-7, rtol=1e-6)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_distributed_training_equals_single_process_training(runs, reference, model_dir, stage):
    losses, grad_norms, weights = reference
    run = runs(stage)
    assert run.final_weights.keys() == weights.keys()
    torch.testing.assert_close(run.losses, losses, atol=1e-6, rtol=1e-5)
    # Adam is blind to a constant gradient scale; the pre-clip norm is not (rank averaging, normalizer).
    torch.testing.assert_close(run.grad_norms, grad_norms, atol=1e-6, rtol=1e-5)
    for name, tensor in weights.items():
        # Adam turns rounding noise in near-zero gradient entries into updates of up to ~lr; 2% of
        # lr per element is far below what a lost micro-batch or a wrong boundary would move.
        torch.testing.assert_close(run.final_weights[name], tensor, atol=2e-5, rtol=1e-4,
                                   msg=lambda m: f"{name}: {m}")
    initial = native_to_hf(load_model(model_dir).model)
    assert max((weights[n] - initial[n]).abs().max() for n in initial) > 1e-3, "training did not move the weights"


def test_zero3_shards_parameters_yet_gathers_full_weights(runs, model_dir):
    run = runs(3)
    full = run.numel[0]["full"]
    assert full == sum(p.numel() for p in random_decoder(tiny_config(), seed=0).parameters())
    for rank_numel in run.numel:
        assert rank_numel["full"] == full
        # Each rank stores about half: every parameter is split, padded to a multiple of 2 ...
        assert full / 2 <= rank_numel["local"] <= full / 2 + 64, run.numel
        # ... and keeps no whole parameter between steps (tiny ones would stay by default).
        assert rank_numel["resident"] == 0, run.numel
    assert sum(w.numel() for w in run.final_weights.values()) == full
    assert all(w.is_contiguous() and w.device.type == "cpu" for w in run.final_weights.values())
    # Below stage 3 every rank holds everything.
    assert all(r["local"] == r["full"] == r["resident"] == full for r in runs(1).numel)


def sample_with(model_dir: str, weights: dict | None):
    engine = Engine(load_model(model_dir).model, EngineConfig(max_batch_size=4, max_seq_len=64))
    if weights is not None:
        engine.update_policy(weights, version=STEPS)
    params = [SamplingParams(temperature=1.0, max_new_tokens=16, seed=i) for i in range(4)]
    return engine.generate([Request(request_id=str(i), prompt_ids=(BOS_ID, 5 + i, 6, SEP_ID), params=p)
                            for i, p in enumerate(params)])


def test_gathered_weights_serve_in_an_engine_like_the_reference(runs, reference, model_dir):
    learner = sample_with(model_dir, runs(3).final_weights)
    single_process = sample_with(model_dir, reference[2])
    initial = sample_with(model_dir, None)
    for mine, theirs in zip(learner, single_process):
        assert mine.token_ids == theirs.token_ids and mine.policy_version == STEPS
        torch.testing.assert_close(torch.tensor(mine.logprobs), torch.tensor(theirs.logprobs), atol=1e-5, rtol=1e-5)
    assert any(not torch.allclose(torch.tensor(a.logprobs[:4]), torch.tensor(b.logprobs[:4]), atol=1e-3)
               for a, b in zip(learner, initial)), "the engine still serves the initial weights"


def test_published_weights_arrive_with_their_version(runs):
    run = runs(1)  # over CURVE, signed
    assert run.received is not None, "the subscriber got nothing within 30 s"
    version, weights = run.received
    assert version == 1
    assert weights.keys() == run.published.keys()
    for name, tensor in run.published.items():
        assert torch.equal(weights[name], tensor), name
    assert run.received_in_plaintext is None, "a subscriber without the run's keys got the weights"


def test_no_connection_leaves_loopback(runs):
    assert runs(3).non_loopback == []


@pytest.mark.parametrize("stage", [pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow), 3])
def test_checkpoint_restores_weights_and_optimizer_exactly(runs, model_dir, fixed_batch, stage):
    run = runs(stage)
    with LearnerGroup(model_dir, learner_config(stage)) as group:
        assert group.load_checkpoint(run.checkpoint_dir, TAG) == CLIENT_STATE
        state = group.state()
        assert (state.step, state.policy_version) == (CHECKPOINT_AFTER, 1)
        # The next loss checks the weights; the one after, the Adam moments that shaped the step between.
        losses = [group.train_step(fixed_batch)["loss"] for _ in range(STEPS - CHECKPOINT_AFTER)]
        assert losses == run.losses[CHECKPOINT_AFTER:]
        weights = group.full_weights()
        for name, tensor in run.final_weights.items():
            assert torch.equal(weights[name], tensor), name
        # Errors every rank raises alike leave the group usable.
        with pytest.raises(LearnerInputError, match="must be an int > the current policy version 1"):
            group.publish(1)
        with pytest.raises(LearnerCheckpointError, match="no learner checkpoint 'missing'"):
            group.load_checkpoint(run.checkpoint_dir, "missing")
        bad = dataclasses.replace(fixed_batch, input_ids_BT=fixed_batch.input_ids_BT.clone().fill_(10_000))
        with pytest.raises(LearnerBatchError, match="token id 10000 outside"):
            group.train_step(bad)
        assert group.publish(2)["version"] == 2


@pytest.mark.slow
def test_bf16_with_kl_to_a_reference_model_trains(ray_session, model_dir, fixed_batch):
    loss = GrpoLossConfig(policy_loss=PolicyLossConfig(kl_coef=0.1))
    with LearnerGroup(model_dir, learner_config(3, dtype="bfloat16", loss=loss)) as group:
        stats = [group.train_step(fixed_batch) for _ in range(STEPS)]
        weights = group.full_weights()
    losses = [s["loss"] for s in stats]
    assert losses[-1] < losses[0] - 0.1, losses
    # The reference is the fp32 starting point: bf16 rounding alone is a small KL, training adds more.
    assert 0 <= stats[0]["kl"] < 1e-2 and stats[-1]["kl"] > stats[0]["kl"], [s["kl"] for s in stats]
    assert {w.dtype for w in weights.values()} == {torch.bfloat16}
