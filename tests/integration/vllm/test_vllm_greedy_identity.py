"""Greedy speculative decoding on vLLM is token-for-token vLLM's plain decoding (and our native
engine's), with the policy's logprobs, for every drafter the vLLM backend runs; and a check that
vLLM's default padded drafter batch is NOT lossless on CPU (the reason the backend turns it off)."""

import pytest
import torch

from rollspec.backends.drafter_spec import DrafterSpec
from rollspec.engine.engine import Engine
from rollspec.engine.loader import load_model

from .conftest import CONFIG, greedy_requests

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


@pytest.fixture(scope="module")
def plain(models, start):
    return start(models["policy0"]).generate(greedy_requests("r"))


def _spec(kind, models, k):
    paths = {"draft_model": models["draft0"], "eagle": models["eagle0"], "eagle3": models["eagle3"]}
    return DrafterSpec(kind=kind, path=str(paths[kind]) if kind in paths else None, k=k, ngram_min=1, ngram_max=3)


def test_vllm_plain_equals_native_engine(models, plain):
    native = Engine(load_model(models["policy0"]).model, CONFIG).generate(greedy_requests("r"))
    assert [c.token_ids for c in plain] == [c.token_ids for c in native]
    for ours, theirs in zip(native, plain):
        torch.testing.assert_close(torch.tensor(theirs.logprobs), torch.tensor(ours.logprobs), atol=2e-4, rtol=0)


@pytest.mark.parametrize("kind,k", [("draft_model", 3), ("eagle", 3), ("eagle3", 3), ("ngram", 3)])
def test_speculative_greedy_equals_plain(kind, k, models, start, plain):
    generator = start(models["policy0"], _spec(kind, models, k))
    got = generator.generate(greedy_requests("r"))
    for ours, ref in zip(got, plain):
        assert ours.token_ids == ref.token_ids, f"{kind} k={k} {ours.request_id}"
        assert ours.finish_reason == ref.finish_reason
        torch.testing.assert_close(torch.tensor(ours.logprobs), torch.tensor(ref.logprobs), atol=2e-4, rtol=0)
    verify = sum(c.stats.num_verify_steps for c in got)
    drafted = sum(c.stats.num_drafted for c in got)
    rejected = drafted - sum(c.stats.num_accepted for c in got)
    assert verify > 0 and rejected > 0, "the test needs verify steps that reject drafts to mean anything"
    # Per-request counters add up to vLLM's engine-wide per-position counters.
    _, accepted_per_pos = generator.engine_acceptance()
    assert accepted_per_pos[:k] == [sum(c.stats.accepted_per_position[j] for c in got) for j in range(k)]
    generator.close()


def test_batch_size_schedule_sets_k_per_step(models, start, plain):
    """The depth schedule handed to vLLM at start: k = 3 when one sequence runs, k = 1 above."""
    spec = DrafterSpec(kind="draft_model", path=str(models["draft0"]), k=3, schedule=((1, 1, 3), (2, 16, 1)))
    generator = start(models["policy0"], spec)
    alone = generator.generate(greedy_requests("r", num=1))[0]
    assert alone.token_ids == plain[0].token_ids
    drafted = alone.stats.drafted_per_position
    assert drafted[0] > 0 and drafted[2] >= 0.8 * drafted[0]
    batch = generator.generate(greedy_requests("r"))
    assert [c.token_ids for c in batch] == [c.token_ids for c in plain]
    first, second = (sum(c.stats.drafted_per_position[j] for c in batch) for j in (0, 1))
    assert second < 0.5 * first  # most steps ran with more than one sequence, at k = 1
    generator.close()
