"""Statistical losslessness end to end: the distribution of short continuations sampled through
the engine with speculation equals the exact plain-sampling distribution (enumerated), for every
drafter and several sampling settings; the same test catches a deliberately broken verifier."""

import pytest

from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters.draft_model import DraftModelDrafter
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.drafters.mtp import MTPDrafter
from rollspec.engine.drafters.ngram import NgramDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.exact_distribution import continuation_distribution, g_test_p_value
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.engine.verify import verify
from rollspec.models.random_models import random_decoder, random_eagle_head, random_mtp_heads

from .conftest import (
    BATCH,
    CFG,
    LENGTH,
    NUM_SAMPLES,
    P_VALUE_FLOOR,
    PROMPT,
    continuation_counts,
    verify_without_residual,
)


@pytest.fixture(scope="module")
def policy():
    return random_decoder(CFG, seed=11, std=0.5)


def _drafter(kind, policy, max_len):
    if kind == "draft_model":
        return DraftModelDrafter(random_decoder(CFG, seed=12, std=0.5), num_slots=BATCH, max_len=max_len)
    if kind == "eagle":
        return EagleDrafter(random_eagle_head(CFG, seed=13, std=0.5), policy, num_slots=BATCH, max_len=max_len)
    if kind == "mtp":
        return MTPDrafter(random_mtp_heads(CFG, num_layers=2, seed=14, std=0.5), policy)
    return NgramDrafter(num_slots=BATCH, min_n=1, max_n=2)


def sample_counts(policy, drafter, params, k, verifier=verify, seed=0):
    """Continuation counts over NUM_SAMPLES requests, and how many drafts were rejected."""
    config = EngineConfig(max_batch_size=BATCH, max_seq_len=16, k_max=8, seed=seed)
    engine = Engine(policy, config, drafter=drafter, depth=FixedDepth(k), verifier=verifier)
    requests = [Request(request_id=str(i), prompt_ids=PROMPT, params=params) for i in range(NUM_SAMPLES)]
    return continuation_counts(engine.generate(requests))


PARAMS = {
    "t1": SamplingParams(temperature=1.0, max_new_tokens=LENGTH),
    # Without top-k / top-p drafters draw through the C kernel (drafters/draws.py), which divides
    # by the temperature itself: t0.6 covers that, t1 the unit-temperature branch.
    "t0.6": SamplingParams(temperature=0.6, max_new_tokens=LENGTH),
    "t0.7-topk5": SamplingParams(temperature=0.7, top_k=5, max_new_tokens=LENGTH),
    # Every enumerated context keeps its top-p cut at least 1.4e-3 away from a token boundary
    # (measured), so float round-off cannot move the cut between batched and unbatched forwards.
    "t2-topp0.9": SamplingParams(temperature=2.0, top_p=0.9, max_new_tokens=LENGTH),
}


@pytest.mark.parametrize("params_name", sorted(PARAMS))
@pytest.mark.parametrize("kind,k", [("draft_model", 2), ("eagle", 3), ("mtp", 2), ("ngram", 2)])
def test_speculative_sampling_matches_exact_distribution(kind, k, params_name, policy):
    params = PARAMS[params_name]
    exact = continuation_distribution(policy, list(PROMPT), params, LENGTH)
    counts, num_rejected = sample_counts(policy, _drafter(kind, policy, 32), params, k)
    assert g_test_p_value(counts, exact) > P_VALUE_FLOOR
    # Power: enough rejections happened for a wrong residual to show (see the broken-verifier tests).
    assert num_rejected > NUM_SAMPLES // 10


def test_plain_sampling_matches_exact_distribution(policy):
    exact = continuation_distribution(policy, list(PROMPT), PARAMS["t1"], LENGTH)
    counts, _ = sample_counts(policy, None, PARAMS["t1"], 0)
    assert g_test_p_value(counts, exact) > P_VALUE_FLOOR


@pytest.mark.parametrize("kind,params_name", [("draft_model", "t1"), ("draft_model", "t0.7-topk5"),
                                              ("draft_model", "t2-topp0.9"), ("ngram", "t1")])
def test_broken_verifier_fails_the_same_test(kind, params_name, policy):
    params = PARAMS[params_name]
    exact = continuation_distribution(policy, list(PROMPT), params, LENGTH)
    counts, _ = sample_counts(policy, _drafter(kind, policy, 32), params, 2, verifier=verify_without_residual)
    assert g_test_p_value(counts, exact) < 1e-8
