"""The processed distribution: temperature, top-k, top-p and greedy exactly as documented, and
inverse-CDF sampling that follows it."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import power_divergence

from rollspec.engine import cpu_kernels
from rollspec.engine.errors import InvalidSamplingParamsError
from rollspec.engine.sampler import SamplingTensors, processed_probs, sample_from, sample_from_torch, token_logprobs
from rollspec.engine.sampling_params import SamplingParams


def _probs(logits, **params):
    sampling = SamplingTensors.from_params([SamplingParams(**params)], torch.device("cpu"))
    return processed_probs(torch.as_tensor(logits, dtype=torch.float32)[None, None], sampling)[0, 0]


def test_temperature_scales_logits():
    logits = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(_probs(logits, temperature=0.5), torch.softmax(logits / 0.5, -1))


def test_greedy_is_one_hot_at_argmax():
    assert _probs([0.1, 3.0, 2.9], temperature=0.0).tolist() == [0.0, 1.0, 0.0]


def test_top_k_keeps_the_k_largest():
    probs = _probs([1.0, 4.0, 3.0, 2.0], top_k=2)
    assert (probs > 0).tolist() == [False, True, True, False]
    torch.testing.assert_close(probs[1:3], torch.softmax(torch.tensor([4.0, 3.0]), -1))


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    assert (_probs(logits, top_p=0.7) > 0).tolist() == [True, True, False, False]
    assert (_probs(logits, top_p=0.8) > 0).tolist() == [True, True, False, False]
    assert (_probs(logits, top_p=0.81) > 0).tolist() == [True, True, True, False]
    assert (_probs(logits, top_p=0.01) > 0).tolist() == [True, False, False, False]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.05, 1.0), st.integers(0, 12), st.floats(0.1, 3.0))
def test_processed_probs_is_a_distribution_respecting_truncation(seed, top_p, top_k, temperature):
    logits = torch.randn(3, 2, 12, generator=torch.Generator().manual_seed(seed)) * 3
    params = [SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k), SamplingParams(temperature=0.0),
              SamplingParams()]
    probs = processed_probs(logits, SamplingTensors.from_params(params, torch.device("cpu")))
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 2))
    if top_k:
        assert int((probs[0] > 0).sum(-1).max()) <= top_k
    assert ((probs[1] == 1.0).sum(-1) == 1).all()
    torch.testing.assert_close(probs[2], torch.softmax(logits[2], -1))


# `sample_from` runs its C kernel on contiguous fp32 CPU input when the kernels load, `sample_from_torch` never.
SAMPLERS = [pytest.param(sample_from, id="sample_from"), pytest.param(sample_from_torch, id="sample_from_torch")]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sample_from_follows_the_distribution_and_skips_zero_mass(sampler):
    probs = torch.tensor([0.0, 0.1, 0.0, 0.6, 0.3])
    uniforms = torch.rand(100_000, 1, generator=torch.Generator().manual_seed(0))
    tokens = sampler(probs.expand(100_000, 1, 5).contiguous(), uniforms)[:, 0]
    counts = torch.bincount(tokens, minlength=5)
    assert counts[0] == 0 and counts[2] == 0
    keep = probs > 0
    expected = probs[keep].double() / probs[keep].double().sum() * 100_000
    p_value = power_divergence(counts[keep].numpy(), expected.numpy(), lambda_="log-likelihood").pvalue
    assert p_value > 1e-4
    assert sampler(probs[None, None], torch.tensor([[1.0 - 1e-9]])).item() == 4
    # u * total rounding onto the total must not land on trailing zero-probability tokens.
    assert sampler(torch.tensor([0.4, 0.6, 0.0, 0.0])[None, None], torch.tensor([[1.0]])).item() == 1


@pytest.mark.skipif(not cpu_kernels.enabled(), reason="no C compiler or AVX-512F: sample_from is sample_from_torch")
@pytest.mark.parametrize("seed", range(4))
def test_sample_kernel_draws_exactly_the_torch_token(seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(200):
        B, T, V = (int(torch.randint(1, n, (1,), generator=gen)) for n in (9, 6, 80))
        probs = (torch.randn(B, T, V, generator=gen) * 8 * torch.rand(1, generator=gen)).softmax(-1)
        probs[probs < 0.05 * torch.rand(1, generator=gen)] = 0.0  # zero-mass tokens, possibly whole rows
        # Unnormalized rows, uniforms at the top of [0, 1), and a strided column of uniforms (a
        # drafter's uniforms_BK[:, j:j+1]) all take the kernel.
        probs = probs * torch.rand(B, T, 1, generator=gen)
        uniforms = torch.rand(B, T + 2, generator=gen)[:, 1:T + 1]
        uniforms[torch.rand(B, T, generator=gen) < 0.1] = 1.0 - 2.0 ** -24
        assert torch.equal(sample_from(probs, uniforms), sample_from_torch(probs, uniforms))


def test_logprobs_are_of_the_processed_distribution_except_greedy():
    logits = torch.tensor([[[1.0, 2.0, 0.5, 0.1]]]).expand(2, 1, 4)
    params = [SamplingParams(temperature=0.7, top_k=2), SamplingParams(temperature=0.0)]
    sampling = SamplingTensors.from_params(params, torch.device("cpu"))
    probs = processed_probs(logits, sampling)
    tokens = torch.tensor([[0], [1]])
    got = token_logprobs(logits, probs, tokens, sampling)
    assert got[0, 0].item() == pytest.approx(torch.log_softmax(torch.tensor([1.0, 2.0]) / 0.7, -1)[0].item(), abs=1e-6)
    assert got[1, 0].item() == pytest.approx(torch.log_softmax(logits[1, 0], -1)[1].item(), abs=1e-6)


@pytest.mark.parametrize("bad", [dict(temperature=-1.0), dict(temperature=float("nan")), dict(top_p=0.0),
                                 dict(top_p=1.5), dict(top_k=-1), dict(max_new_tokens=0), dict(stop_token_ids=(-3,)),
                                 dict(seed="x")])
def test_invalid_sampling_params_are_named(bad):
    field = next(iter(bad))
    with pytest.raises(InvalidSamplingParamsError, match=field):
        SamplingParams(**bad)
