"""The MTP drafter's chain as one C call (drafters/mtp_chain.py) proposes what its Python loop does:
the same tokens and q up to float rounding (the kernel's SiLU and norm sums), each token drawn from
the q reported, for sampled and greedy rows and more depths than heads."""

import pytest
import torch

from rollspec.engine import cpu_kernels
from rollspec.engine.drafters import mtp_chain
from rollspec.engine.drafters.draws import DraftDraws
from rollspec.engine.sampler import SamplingTensors, sample_from_torch
from rollspec.engine.sampling_params import SamplingParams
from rollspec.models.random_models import random_decoder, random_mtp_heads, tiny_config

pytestmark = pytest.mark.skipif(not cpu_kernels.enabled(), reason="no C compiler or AVX-512F")
CFG = tiny_config(vocab_size=40)
PARAMS = [SamplingParams(temperature=1.0), SamplingParams(temperature=0.0), SamplingParams(temperature=0.6),
          SamplingParams(temperature=1.3), SamplingParams(temperature=1.0)]


def _python_loop(heads, policy, state_BD, token_B, draws, k):
    state_B1D, token_B1 = state_BD[:, None], token_B[:, None]
    for j in range(k):
        state_B1D, normed_B1D = heads.head(j).forward_cached(state_B1D, token_B1, policy.embed_tokens)
        token_B1 = draws.draw(j, normed_B1D)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_the_kernel_proposes_what_the_python_loop_does(k):
    policy = random_decoder(CFG, seed=0, std=0.3)
    heads = random_mtp_heads(CFG, num_layers=2, seed=1, std=0.3)
    sampling = SamplingTensors.from_params(PARAMS, torch.device("cpu"))
    num_tokens = 0
    for seed in range(10):
        gen = torch.Generator().manual_seed(seed)
        state_BD = torch.randn(len(PARAMS), CFG.hidden_size, generator=gen)
        token_B = torch.randint(0, 40, (len(PARAMS),), generator=gen)
        uniforms_BK = torch.rand(len(PARAMS), k, generator=gen)
        with torch.inference_mode():
            fused, looped = DraftDraws(policy.lm_head, sampling, uniforms_BK), DraftDraws(policy.lm_head, sampling,
                                                                                           uniforms_BK)
            assert mtp_chain.chain(heads, policy, state_BD.clone(), token_B, fused)
            _python_loop(heads, policy, state_BD, token_B, looped, k)
        assert torch.equal(fused.tokens_BK, looped.tokens_BK)
        torch.testing.assert_close(fused.q_BKV, looped.q_BKV, rtol=1e-4, atol=1e-5)
        for j in range(k):  # each draft is the inverse-CDF draw from the q the proposal reports
            assert torch.equal(fused.tokens_BK[:, j], sample_from_torch(fused.q_BKV[:, j: j + 1].contiguous(),
                                                                       uniforms_BK[:, j: j + 1])[:, 0])
        num_tokens += fused.tokens_BK.numel()
    assert num_tokens == 10 * len(PARAMS) * k


def test_a_pending_token_outside_the_vocabulary_raises():
    policy = random_decoder(CFG, seed=0, std=0.3)
    heads = random_mtp_heads(CFG, num_layers=1, seed=1, std=0.3)
    sampling = SamplingTensors.from_params(PARAMS[:1], torch.device("cpu"))
    with torch.inference_mode(), pytest.raises(IndexError):
        mtp_chain.chain(heads, policy, torch.zeros(1, CFG.hidden_size), torch.tensor([40]),
                        DraftDraws(policy.lm_head, sampling, torch.rand(1, 2)))
