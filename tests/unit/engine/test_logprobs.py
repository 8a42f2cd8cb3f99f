"""Logprobs returned under speculation are the policy's own logprobs of the emitted tokens
under the processed distribution they were sampled from, as plain decoding reports them."""

import pytest
import torch

from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters.draft_model import DraftModelDrafter
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.drafters.ngram import NgramDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.sampler import SamplingTensors, processed_probs, token_logprobs
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.models.random_models import random_decoder, random_eagle_head, tiny_config

CFG = tiny_config(vocab_size=40)
SETTINGS = [
    SamplingParams(temperature=1.0, max_new_tokens=24),
    SamplingParams(temperature=0.6, top_k=7, max_new_tokens=24),
    SamplingParams(temperature=1.2, top_p=0.85, max_new_tokens=24),
    SamplingParams(temperature=0.8, top_k=10, top_p=0.9, max_new_tokens=24),
    SamplingParams(temperature=0.0, max_new_tokens=24),
]


def teacher_forced_logprobs(model, prompt, tokens, params):
    ids = torch.tensor([list(prompt) + list(tokens)])
    logits = model.logits(model(ids))[:, len(prompt) - 1: -1]
    sampling = SamplingTensors.from_params([params], ids.device)
    probs = processed_probs(logits, sampling)
    return token_logprobs(logits, probs, torch.tensor([list(tokens)]), sampling)[0]


@pytest.mark.parametrize("kind", ["draft_model", "eagle", "ngram", "plain"])
def test_logprobs_match_teacher_forcing(kind):
    policy = random_decoder(CFG, seed=0, std=0.3)
    config = EngineConfig(max_batch_size=8, max_seq_len=64)
    drafter = {
        "draft_model": lambda: DraftModelDrafter(random_decoder(CFG, seed=1, std=0.3), num_slots=8,
                                                 max_len=config.cache_len),
        "eagle": lambda: EagleDrafter(random_eagle_head(CFG, seed=2, std=0.3), policy, num_slots=8,
                                      max_len=config.cache_len),
        "ngram": lambda: NgramDrafter(num_slots=8, min_n=1),
        "plain": lambda: None,
    }[kind]()
    engine = Engine(policy, config, drafter=drafter, depth=FixedDepth(3))
    requests = [Request(request_id=f"{i}-{j}", prompt_ids=(3, 1 + i, 7, 2 + j), params=params)
                for i, params in enumerate(SETTINGS) for j in range(3)]
    with torch.no_grad():
        for completion, request in zip(engine.generate(requests), requests):
            expected = teacher_forced_logprobs(policy, request.prompt_ids, completion.token_ids, request.params)
            got = torch.tensor(completion.logprobs)
            assert len(got) == len(completion.token_ids)
            assert torch.isfinite(got).all()
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
