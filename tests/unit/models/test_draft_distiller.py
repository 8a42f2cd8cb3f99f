"""The draft-refresh core: each drafter kind gets closer to the policy it is given, follows a policy
that moves, produces weights its engine drafter loads, and never lets a broken refresh out."""

import dataclasses
import random

import pytest
import torch

from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters.draft_model import DraftModelDrafter
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.drafters.mtp import MTPDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.engine.weights import native_to_hf
from rollspec.models.config import RefreshConfig
from rollspec.models.distiller_state import DistillerStateError, TrainerState
from rollspec.models.draft_distiller import DraftDistiller, RefreshFailedError
from rollspec.models.random_models import (
    eagle_config,
    random_decoder,
    random_eagle_head,
    random_mtp_heads,
    tiny_config,
)
from rollspec.models.token_batch import TokenSequence

VOCAB = 32
POLICY_CFG = tiny_config(vocab_size=VOCAB, num_mtp_layers=2)
DRAFT_CFG = tiny_config(vocab_size=VOCAB, num_layers=1, hidden_size=32, num_heads=2, num_kv_heads=1)
CONFIG = RefreshConfig(steps=20, batch_size=16, lr=1e-3, min_sequences=4, buffer_sequences=512, mtp_depth=2,
                       eagle_unroll=2)


def hf(module):
    return {n: t.clone() for n, t in native_to_hf(module).items()}


def policy_weights(seed):
    return hf(random_decoder(POLICY_CFG, seed=seed, std=0.3))


def draft_weights(kind):
    if kind == "draft_model":
        return hf(random_decoder(DRAFT_CFG, seed=5, std=0.1))
    if kind == "eagle":
        return {n.removeprefix("model."): t for n, t in hf(random_eagle_head(POLICY_CFG, seed=6, std=0.1)).items()}
    return random_mtp_heads(POLICY_CFG, num_layers=2, seed=7, std=0.1).checkpoint_weights()


def distiller(kind, config=CONFIG, seed=1):
    draft_config = {"draft_model": DRAFT_CFG, "eagle": eagle_config(POLICY_CFG), "mtp": None}[kind]
    return DraftDistiller(kind, policy_config=POLICY_CFG, policy_weights=policy_weights(seed),
                          draft_weights=draft_weights(kind), config=config, draft_config=draft_config)


def sequences(n, seed=0, policy_seed=1):
    """Random prompts completed by the policy at temperature 1 (what rollouts send the refresher)."""
    rng = random.Random(seed)
    prompts = [tuple(rng.randrange(VOCAB) for _ in range(rng.randint(2, 6))) for _ in range(n)]
    return [TokenSequence(p + c.token_ids, len(p)) for p, c in zip(prompts, _samples(policy_seed, prompts))]


def _samples(policy_seed, prompts):
    policy = random_decoder(POLICY_CFG, seed=policy_seed, std=0.3)
    engine = Engine(policy, EngineConfig(max_batch_size=64, max_seq_len=32, k_max=1, seed=0))
    params = SamplingParams(temperature=1.0, max_new_tokens=12)
    return engine.generate([Request(request_id=str(i), prompt_ids=p, params=params) for i, p in enumerate(prompts)])


@pytest.mark.parametrize("kind", ["draft_model", "eagle", "mtp"])
def test_refresh_brings_the_drafter_closer_to_the_policy(kind):
    refresher = distiller(kind)
    refresher.add_sequences(sequences(128))
    first = refresher.refresh()
    assert first is not None and first.num_steps == CONFIG.steps and not first.stopped_by_budget
    assert first.kl_after < 0.95 * first.kl_before
    second = refresher.refresh()  # continues from where the first left off
    assert second.kl_before == pytest.approx(first.kl_after, rel=1e-5)
    assert second.kl_after < second.kl_before


def test_a_policy_that_moves_is_followed():
    refresher = distiller("eagle")
    refresher.add_sequences(sequences(128))
    for _ in range(3):
        settled = refresher.refresh()
    refresher.set_policy(policy_weights(seed=2))  # the policy moved: the draft is stale now
    refresher.add_sequences(sequences(128, seed=1, policy_seed=2))
    moved = refresher.refresh()
    assert moved.kl_before > 1.5 * settled.kl_after
    for _ in range(2):
        caught_up = refresher.refresh()
    assert caught_up.kl_after < 0.7 * moved.kl_before


def _acceptance(policy, drafter, prompts):
    engine = Engine(policy, EngineConfig(max_batch_size=16, max_seq_len=48, k_max=4, seed=0), drafter=drafter,
                    depth=FixedDepth(3))
    requests = [Request(request_id=str(i), prompt_ids=p, params=SamplingParams(temperature=1.0, max_new_tokens=16,
                                                                              seed=i)) for i, p in enumerate(prompts)]
    done = engine.generate(requests)
    return sum(c.stats.num_accepted for c in done) / sum(c.stats.num_drafted for c in done), done


def test_refreshed_weights_load_into_the_engine_and_raise_its_acceptance():
    policy = random_decoder(POLICY_CFG, seed=1, std=0.3)
    prompts = [tuple(s.token_ids[: s.prompt_len]) for s in sequences(128, seed=3)]
    drafter = DraftModelDrafter(random_decoder(DRAFT_CFG, seed=5, std=0.1), num_slots=16, max_len=64)
    before, done = _acceptance(policy, drafter, prompts)
    refresher = distiller("draft_model")
    refresher.add_sequences(TokenSequence(p + c.token_ids, len(p)) for p, c in zip(prompts, done))  # policy samples
    for _ in range(3):
        result = refresher.refresh()
    drafter.update(result.weights, version=1)
    after, _ = _acceptance(policy, drafter, prompts)
    assert after > before + 0.02  # measured 0.13 -> 0.17: tiny data, but the direction must be right


@pytest.mark.parametrize("kind", ["eagle", "mtp"])
def test_head_weights_load_into_their_engine_drafters(kind):
    policy = random_decoder(POLICY_CFG, seed=1, std=0.3)
    refresher = distiller(kind)
    refresher.add_sequences(sequences(8))
    weights = refresher.refresh().weights
    if kind == "eagle":
        drafter = EagleDrafter(random_eagle_head(POLICY_CFG, seed=6), policy, num_slots=4, max_len=32)
        drafter.update(weights, 1)
        assert torch.equal(drafter.head.fc.weight, refresher.drafter.fc.weight)
    else:
        drafter = MTPDrafter(random_mtp_heads(POLICY_CFG, num_layers=2, seed=7), policy)
        drafter.update(weights, 1)
        assert all(torch.equal(a, b) for a, b in zip(drafter.heads.parameters(), refresher.drafter.parameters()))


def test_too_few_trajectories_means_no_refresh():
    refresher = distiller("draft_model", dataclasses.replace(CONFIG, min_sequences=64))
    refresher.add_sequences(sequences(63))
    assert refresher.refresh() is None
    refresher.add_sequences(sequences(1, seed=9))
    assert refresher.refresh() is not None


def test_the_compute_budget_cuts_a_refresh_short():
    refresher = distiller("draft_model", dataclasses.replace(CONFIG, steps=1000, max_seconds=1e-6))
    refresher.add_sequences(sequences(16))
    result = refresher.refresh()
    assert result.num_steps == 1 and result.stopped_by_budget


def test_a_non_finite_loss_restores_the_last_good_draft():
    refresher = distiller("draft_model")
    refresher.add_sequences(sequences(64))
    good = refresher.weights()
    broken = policy_weights(seed=1)
    broken["lm_head.weight"] = torch.full_like(broken["lm_head.weight"], float("nan"))
    refresher.set_policy(broken)
    with pytest.raises(RefreshFailedError):
        refresher.refresh()
    assert all(torch.equal(good[n], t) for n, t in refresher.weights().items())
    refresher.set_policy(policy_weights(seed=1))
    result = refresher.refresh()  # usable again
    assert result.kl_after < result.kl_before


def test_a_refresh_that_makes_the_held_out_kl_worse_keeps_the_last_good_draft():
    refresher = distiller("draft_model", dataclasses.replace(CONFIG, lr=1.0, steps=5))  # wrecks the draft
    refresher.add_sequences(sequences(32))
    good = refresher.weights()
    with pytest.raises(RefreshFailedError, match="held-out KL"):
        refresher.refresh()
    assert all(torch.equal(good[n], t) for n, t in refresher.weights().items())


@pytest.mark.parametrize("kind", ["draft_model", "eagle"])
def test_a_distiller_restored_from_its_saved_state_refreshes_as_the_original_would(kind):
    config = dataclasses.replace(CONFIG, steps=6)
    original = distiller(kind, config)
    original.add_sequences(sequences(48))
    first = original.refresh()
    assert first.trainer.optimizer_steps == 6 and len(original.buffered()) == 48

    def continued(restore):
        draft_config = {"draft_model": DRAFT_CFG, "eagle": eagle_config(POLICY_CFG)}[kind]
        other = DraftDistiller(kind, policy_config=POLICY_CFG, policy_weights=policy_weights(1),
                               draft_weights=first.weights, config=config, draft_config=draft_config)
        if restore:
            other.restore_state(first.trainer, original.buffered())
        else:  # the same weights and trajectories, but fresh moments and RNG: what a resume did before
            other.add_sequences(original.buffered())
        return other.refresh().weights

    expected = original.refresh().weights
    assert all(torch.equal(expected[n], t) for n, t in continued(restore=True).items())
    assert not all(torch.equal(expected[n], t) for n, t in continued(restore=False).items())


def test_saved_state_that_does_not_fit_is_refused_and_changes_nothing():
    refresher = distiller("draft_model", dataclasses.replace(CONFIG, steps=2))
    refresher.add_sequences(sequences(16))
    trainer = refresher.refresh().trainer
    other = distiller("eagle")
    with pytest.raises(DistillerStateError, match="names no parameter"):
        other.restore_state(trainer, ())
    assert other.trainer_state().optimizer == {}
    wrong_shape = {n: (t[:1] if t.dim() else t) for n, t in trainer.optimizer.items()}
    with pytest.raises(DistillerStateError, match="shape"):
        refresher.restore_state(TrainerState(wrong_shape, trainer.rng_state), ())
    with pytest.raises(DistillerStateError, match="vocab_size"):
        refresher.restore_state(None, [TokenSequence((1, 2, VOCAB), 1)])
    assert len(refresher.buffered()) == 16
