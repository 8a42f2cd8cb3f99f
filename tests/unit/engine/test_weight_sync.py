"""Weight sync on the native engine: after updating a running engine to versions (v, d), greedy
output equals a fresh engine built from (v, d) and the mean acceptance length on a fixed prompt
set is within 5% of the fresh engine's, for every drafter kind; the same holds for an engine
resumed from a checkpoint written at (v, d) and for an explicit restore to an older version.
A drafter left at its old weights (the failure seen in peer engines) fails the acceptance check."""

import copy

import pytest
import torch

from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters.build import build_drafter
from rollspec.engine.drafters.draft_model import DraftModelDrafter
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.drafters.mtp import MTPDrafter
from rollspec.engine.drafters.ngram import NgramDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.errors import WeightUpdateError
from rollspec.engine.loader import load_model
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.engine.weights import native_to_hf
from rollspec.models.hf_dir import write_eagle_dir, write_model_dir
from rollspec.models.random_models import random_decoder, random_eagle_head, random_mtp_heads, tiny_config

VOCAB, K = 24, 3
CFG = tiny_config(vocab_size=VOCAB)
CONFIG = EngineConfig(max_batch_size=8, max_seq_len=64, k_max=K, dtype="float64")
ACCEPTANCE_TOLERANCE = 0.05


def _noisy(model, seed, std=0.02):
    """A draft close to `model`: the same weights plus small seeded noise (high acceptance)."""
    out = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in out.parameters():
            param.add_(std * torch.randn(param.shape, generator=generator, dtype=param.dtype))
    return out


@pytest.fixture(scope="module")
def versions():
    """Policy v0 / v1 and, per drafter kind, draft weights d0 (fit v0) and d1 (fit v1)."""
    policies = [random_decoder(CFG, seed=s, std=0.25).double() for s in (0, 1)]
    return {
        "policy": policies,
        "draft_model": [_noisy(p, seed=10 + i) for i, p in enumerate(policies)],
        "eagle": [random_eagle_head(CFG, seed=20 + i, std=0.25).double() for i in range(2)],
        "mtp": [random_mtp_heads(CFG, num_layers=2, seed=30 + i, std=0.25).double() for i in range(2)],
    }


def _draft_weights(kind, module):
    if kind == "draft_model":
        return native_to_hf(module)
    if kind == "eagle":
        return {n.removeprefix("model."): t for n, t in native_to_hf(module).items()}
    if kind == "mtp":
        return module.checkpoint_weights()
    return {}


def _drafter(kind, versions, d, policy):
    if kind == "draft_model":
        return DraftModelDrafter(copy.deepcopy(versions[kind][d]), num_slots=CONFIG.max_batch_size,
                                 max_len=CONFIG.cache_len, version=d)
    if kind == "eagle":
        return EagleDrafter(copy.deepcopy(versions[kind][d]), policy, num_slots=CONFIG.max_batch_size,
                            max_len=CONFIG.cache_len, version=d)
    if kind == "mtp":
        return MTPDrafter(copy.deepcopy(versions[kind][d]), policy, version=d)
    drafter = NgramDrafter(num_slots=CONFIG.max_batch_size, min_n=1, max_n=3)
    drafter.version = d
    return drafter


def _engine(kind, versions, v, d):
    policy = copy.deepcopy(versions["policy"][v])
    return Engine(policy, CONFIG, drafter=_drafter(kind, versions, d, policy), depth=FixedDepth(K), policy_version=v)


def _requests(tag):
    gen = torch.Generator().manual_seed(5)
    return [Request(request_id=f"{tag}{i}", prompt_ids=tuple(torch.randint(0, VOCAB, (6,), generator=gen).tolist()),
                    params=SamplingParams(temperature=0.0, max_new_tokens=24), group_id=f"g{i % 3}")
            for i in range(8)]


def mean_acceptance_length(completions):
    verify = sum(c.stats.num_verify_steps for c in completions)
    return 1.0 + sum(c.stats.num_accepted for c in completions) / verify


def _update(engine, kind, versions, v, d, *, restore=False):
    engine.update_policy(native_to_hf(versions["policy"][v]), v, restore=restore)
    engine.update_draft(_draft_weights(kind, versions[kind][d]) if kind in versions else {}, d, restore=restore)


def assert_same_as_fresh(got, fresh, *, v, d):
    assert [c.token_ids for c in got] == [c.token_ids for c in fresh]
    assert all(c.policy_version == v and c.draft_version == d for c in got)
    ours, reference = mean_acceptance_length(got), mean_acceptance_length(fresh)
    assert abs(ours - reference) <= ACCEPTANCE_TOLERANCE * reference, (ours, reference)


@pytest.mark.parametrize("kind", ["draft_model", "eagle", "mtp", "ngram"])
def test_updated_engine_equals_fresh_engine(kind, versions):
    engine = _engine(kind, versions, 0, 0)
    engine.generate(_requests("warm"))  # caches and n-gram tables hold v0-era state
    _update(engine, kind, versions, 1, 1)
    fresh = _engine(kind, versions, 1, 1).generate(_requests("r"))
    assert_same_as_fresh(engine.generate(_requests("r")), fresh, v=1, d=1)


@pytest.mark.parametrize("kind", ["draft_model", "eagle", "mtp"])
def test_resume_from_checkpoint_equals_updated_engine(kind, versions, tmp_path):
    """A checkpoint written at (1, 1) and loaded the way the rollout actor loads its models."""
    policy_v1, draft_d1 = versions["policy"][1], versions[kind][1]
    extra = draft_d1.checkpoint_weights() if kind == "mtp" else None
    policy_cfg = copy.copy(draft_d1.config) if kind == "mtp" else None
    write_model_dir(tmp_path / "policy", policy_v1, extra_weights=extra, config=policy_cfg)
    if kind == "draft_model":
        write_model_dir(tmp_path / "draft", draft_d1)
    elif kind == "eagle":
        write_eagle_dir(tmp_path / "draft", draft_d1)
    loaded = load_model(tmp_path / "policy", dtype=torch.float64)
    drafter = build_drafter(kind, policy=loaded, config=CONFIG, draft_path=tmp_path / "draft")
    drafter.version = 1
    resumed = Engine(loaded.model, CONFIG, drafter=drafter, depth=FixedDepth(K), policy_version=1)
    updated = _engine(kind, versions, 0, 0)
    updated.generate(_requests("warm"))
    _update(updated, kind, versions, 1, 1)
    assert_same_as_fresh(updated.generate(_requests("r")), resumed.generate(_requests("r")), v=1, d=1)


def test_restore_to_an_older_version_equals_fresh_engine(versions):
    engine = _engine("draft_model", versions, 1, 1)
    engine.generate(_requests("warm"))
    with pytest.raises(WeightUpdateError, match="not newer"):
        _update(engine, "draft_model", versions, 0, 0)
    _update(engine, "draft_model", versions, 0, 0, restore=True)
    fresh = _engine("draft_model", versions, 0, 0).generate(_requests("r"))
    assert_same_as_fresh(engine.generate(_requests("r")), fresh, v=0, d=0)


def test_stale_drafter_fails_the_acceptance_check(versions):
    """The check has teeth: a policy update without the matching draft update (peers' bug) keeps
    the output right but moves acceptance far outside the tolerance."""
    engine = _engine("draft_model", versions, 0, 0)
    engine.update_policy(native_to_hf(versions["policy"][1]), 1)
    stale = engine.generate(_requests("r"))
    fresh = _engine("draft_model", versions, 1, 1).generate(_requests("r"))
    assert [c.token_ids for c in stale] == [c.token_ids for c in fresh]
    with pytest.raises(AssertionError):
        assert_same_as_fresh(stale, fresh, v=1, d=0)
    assert mean_acceptance_length(stale) < (1 - ACCEPTANCE_TOLERANCE) * mean_acceptance_length(fresh)


def test_bad_draft_update_keeps_the_last_good_version(versions):
    engine = _engine("draft_model", versions, 1, 1)
    before = engine.generate(_requests("a"))
    weights = _draft_weights("draft_model", versions["draft_model"][0])
    bad_shape = {**weights, "model.norm.weight": torch.zeros(3, dtype=torch.float64)}
    bad_name = {**weights, "model.not_a_layer.weight": torch.zeros(3, dtype=torch.float64)}
    for bad in (bad_shape, bad_name):
        with pytest.raises(WeightUpdateError):
            engine.update_draft(bad, 2)
    assert engine.draft_version == 1
    after = engine.generate(_requests("b"))
    assert [c.token_ids for c in after] == [c.token_ids for c in before]
    assert mean_acceptance_length(after) == mean_acceptance_length(before)


def test_engine_without_drafter_refuses_a_draft_update(versions):
    engine = Engine(copy.deepcopy(versions["policy"][0]), CONFIG)
    with pytest.raises(WeightUpdateError, match="no drafter"):
        engine.update_draft({}, 1)
    assert engine.draft_version == 0
