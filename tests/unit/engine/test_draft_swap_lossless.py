"""Losslessness holds while draft weights change under the engine: a new draft version is swapped in
after every engine step, in the middle of sequences (drafter caches built by the old weights stay),
as a draft-refresh actor's versions would if they were applied mid-generation. Greedy output is
token-for-token plain decoding; sampled output matches the exact plain-sampling distribution; and the
same sampled test still fails a deliberately broken verifier, so it has the power to notice."""

import pytest
import torch

from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters.draft_model import DraftModelDrafter
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.drafters.mtp import MTPDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.exact_distribution import continuation_distribution, g_test_p_value
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.engine.verify import verify
from rollspec.engine.weights import native_to_hf
from rollspec.models.random_models import random_decoder, random_eagle_head, random_mtp_heads, tiny_config

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


def _drafter_and_versions(kind, policy, cfg, *, num_slots, max_len, dtype):
    """A drafter and three alternative weight sets for it, in the names `Engine.update_draft` takes."""
    if kind == "draft_model":
        drafts = [random_decoder(cfg, seed=20 + i, std=0.5).to(dtype) for i in range(3)]
        drafts.append(policy)  # a perfect draft among the versions: acceptance jumps between swaps
        versions = [{n: t.clone() for n, t in native_to_hf(d).items()} for d in drafts[1:]]
        return DraftModelDrafter(drafts[0], num_slots=num_slots, max_len=max_len), versions
    if kind == "eagle":
        heads = [random_eagle_head(cfg, seed=30 + i, std=0.5).to(dtype) for i in range(3)]
        versions = [{n.removeprefix("model."): t.clone() for n, t in native_to_hf(h).items()} for h in heads[1:]]
        return EagleDrafter(heads[0], policy, num_slots=num_slots, max_len=max_len), versions
    heads = [random_mtp_heads(cfg, num_layers=2, seed=40 + i, std=0.5).to(dtype) for i in range(3)]
    versions = [{n: t.clone() for n, t in h.checkpoint_weights().items()} for h in heads[1:]]
    return MTPDrafter(heads[0], policy), versions


def generate_swapping(engine: Engine, requests: list[Request], versions: list[dict]) -> tuple[list, int]:
    """engine.generate, with the next draft version swapped in after every step; also the swap count."""
    for request in requests:
        engine.add_request(request)
    done, num_swaps = {}, 0
    while engine.has_unfinished():
        done.update((c.request_id, c) for c in engine.step())
        version = engine.draft_version + 1
        engine.update_draft(versions[version % len(versions)], version)
        num_swaps += 1
    return [done[r.request_id] for r in requests], num_swaps


# ------------------------------------------------------------------------------------------ greedy
GREEDY_VOCAB, STOP = 24, 5
GREEDY_CFG = tiny_config(vocab_size=GREEDY_VOCAB)


@pytest.fixture(scope="module")
def greedy_policy():
    # Float64 keeps batched and unbatched matmuls from flipping an argmax on a near tie.
    return random_decoder(GREEDY_CFG, seed=0, std=0.25).double()


@pytest.fixture(scope="module")
def greedy_requests():
    gen = torch.Generator().manual_seed(7)
    out = []
    for i in range(12):
        prompt = tuple(torch.randint(0, GREEDY_VOCAB, (int(torch.randint(1, 16, (1,), generator=gen)),),
                                     generator=gen).tolist())
        params = SamplingParams(temperature=0.0, max_new_tokens=int(torch.randint(8, 40, (1,), generator=gen)),
                                stop_token_ids=(STOP,) if i % 2 else ())
        out.append(Request(request_id=f"r{i}", prompt_ids=prompt, params=params))
    return out


@pytest.mark.parametrize("kind", ["draft_model", "eagle", "mtp"])
def test_greedy_with_draft_swaps_mid_generation_equals_plain(kind, greedy_policy, greedy_requests):
    config = EngineConfig(max_batch_size=6, max_seq_len=64, k_max=4, dtype="float64")
    plain = Engine(greedy_policy, config).generate(greedy_requests)
    drafter, versions = _drafter_and_versions(kind, greedy_policy, GREEDY_CFG, num_slots=6,
                                              max_len=config.cache_len, dtype=torch.float64)
    engine = Engine(greedy_policy, config, drafter=drafter, depth=FixedDepth(3))
    got, num_swaps = generate_swapping(engine, greedy_requests, versions)
    # Sequences were mid-generation at most swaps (6 rows, 12 requests, up to 40 tokens, k = 3).
    assert num_swaps >= 10 and engine.draft_version == num_swaps
    for ours, ref in zip(got, plain):
        assert ours.token_ids == ref.token_ids, f"{kind} {ours.request_id}"
        torch.testing.assert_close(torch.tensor(ours.logprobs), torch.tensor(ref.logprobs), atol=1e-9, rtol=0)


# ------------------------------------------------------------------------------------------ sampling
PARAMS = SamplingParams(temperature=1.0, max_new_tokens=LENGTH)


@pytest.fixture(scope="module")
def policy():
    return random_decoder(CFG, seed=11, std=0.5)


@pytest.fixture(scope="module")
def exact(policy):
    return continuation_distribution(policy, list(PROMPT), PARAMS, LENGTH)


def sample_counts_swapping(policy, kind, k, verifier=verify):
    # BATCH rows, requests admitted as rows free up: swaps land with rows at every position.
    config = EngineConfig(max_batch_size=BATCH, max_seq_len=16, k_max=8, seed=0)
    drafter, versions = _drafter_and_versions(kind, policy, CFG, num_slots=BATCH, max_len=32, dtype=torch.float32)
    engine = Engine(policy, config, drafter=drafter, depth=FixedDepth(k), verifier=verifier)
    requests = [Request(request_id=str(i), prompt_ids=PROMPT, params=PARAMS) for i in range(NUM_SAMPLES)]
    completions, num_swaps = generate_swapping(engine, requests, versions)
    return (*continuation_counts(completions), num_swaps)


@pytest.mark.parametrize("kind,k", [("draft_model", 2), ("eagle", 3), ("mtp", 2)])
def test_sampling_with_draft_swaps_matches_exact_distribution(kind, k, policy, exact):
    counts, num_rejected, num_swaps = sample_counts_swapping(policy, kind, k)
    assert num_swaps >= NUM_SAMPLES // BATCH
    assert g_test_p_value(counts, exact) > P_VALUE_FLOOR
    assert num_rejected > NUM_SAMPLES // 10  # power: enough rejections for a wrong residual to show


def test_broken_verifier_with_draft_swaps_fails_the_same_test(policy, exact):
    counts, _, _ = sample_counts_swapping(policy, "draft_model", 2, verifier=verify_without_residual)
    assert g_test_p_value(counts, exact) < 1e-8
