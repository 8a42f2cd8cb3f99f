"""Greedy speculative decoding is token-for-token plain decoding, for every drafter, every k,
batches from 1 to 16 rows with continuous batching and sequences ending at different times.
Float64 keeps batched and unbatched matmuls from flipping an argmax on a near tie. In float32 on
CPU the engine's C kernels compute every row the same way whatever shares the call, so there the
identity holds in float32 too, logprobs included, to the last bit."""

import copy

import pytest
import torch

from rollspec.engine import cpu_kernels
from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters.draft_model import DraftModelDrafter
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.drafters.mtp import MTPDrafter
from rollspec.engine.drafters.ngram import NgramDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.models.random_models import (
    random_decoder,
    random_eagle_head,
    random_mtp_heads,
    tiny_config,
)

VOCAB, STOP = 24, 5
CFG = tiny_config(vocab_size=VOCAB)


@pytest.fixture(scope="module")
def policy():
    return random_decoder(CFG, seed=0, std=0.25).double()


@pytest.fixture(scope="module")
def requests():
    gen = torch.Generator().manual_seed(7)
    out = []
    for i in range(16):
        prompt_len = int(torch.randint(1, 20, (1,), generator=gen))
        prompt = tuple(torch.randint(0, VOCAB, (prompt_len,), generator=gen).tolist())
        params = SamplingParams(temperature=0.0, max_new_tokens=int(torch.randint(1, 40, (1,), generator=gen)),
                                stop_token_ids=(STOP,) if i % 2 else ())
        out.append(Request(request_id=f"r{i}", prompt_ids=prompt, params=params, group_id=f"g{i % 4}"))
    return out


def _drafter(kind: str, policy, num_slots: int, max_len: int):
    dtype = policy.embed_tokens.weight.dtype
    if kind == "ngram":
        return NgramDrafter(num_slots=num_slots, min_n=1, max_n=4)
    if kind == "draft_model":
        return DraftModelDrafter(random_decoder(tiny_config(vocab_size=VOCAB, num_layers=1), seed=1, std=0.25).to(dtype),
                                 num_slots=num_slots, max_len=max_len)
    if kind == "draft_is_policy":
        return DraftModelDrafter(copy.deepcopy(policy), num_slots=num_slots, max_len=max_len)
    if kind == "eagle":
        return EagleDrafter(random_eagle_head(CFG, seed=2, std=0.25).to(dtype), policy, num_slots=num_slots,
                            max_len=max_len)
    return MTPDrafter(random_mtp_heads(CFG, num_layers=2, seed=3, std=0.25).to(dtype), policy)


def _config(batch: int, dtype: str = "float64") -> EngineConfig:
    return EngineConfig(max_batch_size=batch, max_seq_len=64, k_max=8, dtype=dtype)


@pytest.fixture(scope="module")
def plain(policy, requests):
    return Engine(policy, _config(16)).generate(requests)


@pytest.mark.parametrize("batch", [1, 4, 16])
@pytest.mark.parametrize("kind", ["ngram", "draft_model", "draft_is_policy", "eagle", "mtp"])
def test_speculative_greedy_equals_plain(kind, batch, policy, requests, plain):
    for k in range(1, 9) if batch > 1 else (1, 3, 8):
        engine = Engine(policy, _config(batch), drafter=_drafter(kind, policy, batch, _config(batch).cache_len),
                        depth=FixedDepth(k))
        got = engine.generate(requests)
        for ours, ref in zip(got, plain):
            assert ours.token_ids == ref.token_ids, f"{kind} k={k} batch={batch} {ours.request_id}"
            assert ours.finish_reason == ref.finish_reason
            torch.testing.assert_close(torch.tensor(ours.logprobs), torch.tensor(ref.logprobs), atol=1e-9, rtol=0)


def test_identical_draft_accepts_every_token(policy, requests):
    k = 4
    engine = Engine(policy, _config(16), drafter=_drafter("draft_is_policy", policy, 16, _config(16).cache_len),
                    depth=FixedDepth(k))
    for completion in engine.generate(requests):
        stats = completion.stats
        assert stats.num_accepted == stats.num_drafted, completion.request_id
        # Verify steps emit k + 1 tokens until the budget or a stop token cuts the last one short.
        assert stats.num_verify_steps == -(-(len(completion.token_ids) - 1) // (k + 1))


def test_plain_decoding_does_not_depend_on_batch_size(policy, requests, plain):
    for batch in (1, 3):
        got = Engine(policy, _config(batch)).generate(requests)
        assert [c.token_ids for c in got] == [c.token_ids for c in plain]


@pytest.mark.skipif(not cpu_kernels.enabled(), reason="CPU kernels do not load here")
@pytest.mark.parametrize("kind", ["ngram", "draft_model", "eagle", "mtp"])
def test_speculative_greedy_equals_plain_bit_for_bit_in_float32_through_the_kernels(kind, requests):
    policy = random_decoder(CFG, seed=0, std=0.25)
    plain = Engine(policy, _config(16, "float32")).generate(requests)
    for batch, k in [(1, 3), (5, 1), (5, 4), (16, 8)]:
        config = _config(batch, "float32")
        engine = Engine(policy, config, drafter=_drafter(kind, policy, batch, config.cache_len), depth=FixedDepth(k))
        for ours, ref in zip(engine.generate(requests), plain):
            assert ours.token_ids == ref.token_ids, f"{kind} k={k} batch={batch} {ours.request_id}"
            assert ours.logprobs == ref.logprobs, f"{kind} k={k} batch={batch} {ours.request_id}"
