"""The EAGLE draft chain as one C call (drafters/eagle_chain.py) proposes exactly what the
drafter's Python loop proposes through the same kernels: whole generations, sampled and greedy
rows, ragged rows and continuous batching, are identical to the last bit."""

import pytest
import torch

from rollspec.engine import cpu_kernels
from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters import eagle_chain
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.models.random_models import random_decoder, random_eagle_head, tiny_config

VOCAB = 40
CFG = tiny_config(vocab_size=VOCAB)
pytestmark = pytest.mark.skipif(not cpu_kernels.enabled(), reason="no C compiler or AVX-512F")


def _requests(max_seq_len: int):
    gen = torch.Generator().manual_seed(5)
    out = []
    for i in range(12):
        prompt = tuple(torch.randint(0, VOCAB, (int(torch.randint(1, 14, (1,), generator=gen)),), generator=gen).tolist())
        temperature = (0.0, 1.0, 0.7)[i % 3]
        out.append(Request(request_id=f"r{i}", prompt_ids=prompt, params=SamplingParams(
            temperature=temperature, seed=100 + i,
            max_new_tokens=min(int(torch.randint(3, 30, (1,), generator=gen)), max_seq_len - len(prompt)))))
    return out


def _generate(chain_kernel: bool, k: int, max_seq_len: int, monkeypatch) -> tuple[list, list, int]:
    policy = random_decoder(CFG, seed=0, std=0.3)
    config = EngineConfig(max_batch_size=5, max_seq_len=max_seq_len, k_max=8, seed=0)
    drafter = EagleDrafter(random_eagle_head(CFG, seed=1, std=0.3), policy, num_slots=5, max_len=config.cache_len)
    monkeypatch.setattr(drafter, "chain_kernel", chain_kernel)
    calls = []
    real_run = eagle_chain.run
    monkeypatch.setattr(eagle_chain, "run", lambda *args: calls.append(real_run(*args)) or calls[-1])
    proposals = []
    real_propose = drafter.propose

    def propose(ctx, k):
        proposal = real_propose(ctx, k)
        proposals.append((proposal.tokens_BK.clone(), proposal.q_probs_BKV.clone()))
        return proposal

    monkeypatch.setattr(drafter, "propose", propose)
    engine = Engine(policy, config, drafter=drafter, depth=FixedDepth(k))
    completions = engine.generate(_requests(max_seq_len))
    return [(c.token_ids, c.logprobs, c.finish_reason, c.stats) for c in completions], proposals, sum(calls)


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("max_seq_len", [48, 20], ids=["roomy", "to-the-end"])
def test_chain_kernel_generates_what_the_python_loop_does(k, max_seq_len, monkeypatch):
    fused, fused_proposals, fused_calls = _generate(True, k, max_seq_len, monkeypatch)
    looped, looped_proposals, looped_calls = _generate(False, k, max_seq_len, monkeypatch)
    assert fused_calls > 10 and looped_calls == 0  # the kernel ran on one side only
    # Drafts never change what is generated (lossless), so the proposals are compared themselves.
    assert len(fused_proposals) == len(looped_proposals)
    for (tokens, q), (want_tokens, want_q) in zip(fused_proposals, looped_proposals):
        assert torch.equal(tokens, want_tokens) and torch.equal(q, want_q)
    assert fused == looped
