"""Weight sync on the vLLM backend: after updating a running engine to versions (v, d) in place,
greedy output equals a fresh engine built from (v, d) and the mean acceptance length on a fixed
prompt set is within 5% of the fresh engine's, for the draft model and the EAGLE head (the
drafter's own weights are reloaded, not just the policy's). A sleep / wake-up keeps both. Bad
updates (wrong names, wrong shapes, old versions, while generating) raise WeightUpdateError and
the last good version keeps serving the same output."""

import pytest
import torch

from rollspec.backends.drafter_spec import DrafterSpec
from rollspec.engine.errors import WeightUpdateError
from rollspec.engine.loader import read_safetensors

from .conftest import greedy_requests, mean_acceptance_length

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
TOLERANCE = 0.05


def _weights(path):
    return read_safetensors(path)


def _spec(kind, models, d):
    return DrafterSpec(kind=kind, path=str(models[f"{'draft' if kind == 'draft_model' else kind}{d}"]), k=3)


def assert_same_as_fresh(got, fresh, *, v, d):
    assert [c.token_ids for c in got] == [c.token_ids for c in fresh]
    assert all(c.policy_version == v and c.draft_version == d for c in got)
    ours, reference = mean_acceptance_length(got), mean_acceptance_length(fresh)
    assert abs(ours - reference) <= TOLERANCE * reference, (ours, reference)


@pytest.mark.parametrize("kind", ["draft_model", "eagle"])
def test_updated_engine_equals_fresh_engine(kind, models, start):
    fresh = start(models["policy1"], _spec(kind, models, 1), policy_version=1, draft_version=1)
    reference = fresh.generate(greedy_requests("r"))
    fresh.close()
    engine = start(models["policy0"], _spec(kind, models, 0))
    engine.generate(greedy_requests("warm"))  # prefix cache and drafter state from v0
    sums_before = engine.weight_sums()
    engine.update_policy(_weights(models["policy1"]), 1)
    engine.update_draft(_weights(models[f"{'draft' if kind == 'draft_model' else kind}1"]), 1)
    sums_after = engine.weight_sums()
    assert sums_after["policy"] != sums_before["policy"] and sums_after["draft"] != sums_before["draft"]
    assert_same_as_fresh(engine.generate(greedy_requests("r")), reference, v=1, d=1)
    # vLLM's sleep mode is a no-op on CPU; the weights and acceptance must survive it all the same.
    engine.sleep()
    engine.wake_up()
    assert_same_as_fresh(engine.generate(greedy_requests("s")), reference, v=1, d=1)


def test_stale_drafter_is_caught_by_the_acceptance_check(models, start):
    """Policy updated, drafter not (the peer failure): output stays right, acceptance drops."""
    fresh = start(models["policy1"], _spec("draft_model", models, 1), policy_version=1, draft_version=1)
    reference = fresh.generate(greedy_requests("r"))
    fresh.close()
    engine = start(models["policy0"], _spec("draft_model", models, 0))
    engine.update_policy(_weights(models["policy1"]), 1)
    stale = engine.generate(greedy_requests("r"))
    assert [c.token_ids for c in stale] == [c.token_ids for c in reference]
    assert mean_acceptance_length(stale) < (1 - TOLERANCE) * mean_acceptance_length(reference)


def test_bad_updates_are_refused_and_the_last_good_version_serves(models, start):
    engine = start(models["policy0"], _spec("eagle", models, 0))
    before = engine.generate(greedy_requests("a"))
    sums = engine.weight_sums()
    policy, eagle = _weights(models["policy1"]), _weights(models["eagle1"])
    bad_policy = [
        {**policy, "model.layers.0.mlp.gate_proj.weight": torch.zeros(3, 3)},  # wrong shape
        {**policy, "model.layers.9.mlp.gate_proj.weight": torch.zeros(3, 3)},  # unknown name
        {n: t for n, t in policy.items() if n != "model.norm.weight"},  # missing tensor
        {**policy, "model.norm.weight": torch.ones(128, dtype=torch.long)},  # not floating point
    ]
    for bad in bad_policy:
        with pytest.raises(WeightUpdateError, match="policy version 1 rejected"):
            engine.update_policy(bad, 1)
    with pytest.raises(WeightUpdateError, match="draft version 1 rejected"):
        engine.update_draft({**eagle, "fc.weight": torch.zeros(128, 128)}, 1)
    with pytest.raises(WeightUpdateError, match="not newer"):
        engine.update_policy(policy, 0)
    engine.add_request(greedy_requests("busy")[0])
    with pytest.raises(WeightUpdateError, match="still generating"):
        engine.update_policy(policy, 1)
    engine.generate([])
    assert engine.policy_version == 0 and engine.draft_version == 0
    assert engine.weight_sums() == sums
    after = engine.generate(greedy_requests("b"))
    assert [c.token_ids for c in after] == [c.token_ids for c in before]
    assert mean_acceptance_length(after) == mean_acceptance_length(before)
