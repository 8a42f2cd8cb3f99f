"""Draft chains as C calls (drafters/eagle_chain.py: EAGLE catch-up and chain;
drafters/draft_chain.py: the draft model's chain) propose exactly what the drafters' Python paths
propose through the same kernels: every proposal and whole generations, sampled and greedy rows,
ragged rows, split catch-ups after admissions and continuous batching, are identical to the last bit."""

import pytest
import torch

from rollspec.engine import cpu_kernels
from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters import draft_chain, eagle_chain
from rollspec.engine.drafters.draft_model import DraftModelDrafter
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.engine.weights import load_native
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


def _generate(kind: str, kernels: bool, k: int, max_seq_len: int, monkeypatch, swap: bool = False,
              ) -> tuple[list, list, int]:
    policy = random_decoder(CFG, seed=0, std=0.3)
    config = EngineConfig(max_batch_size=5, max_seq_len=max_seq_len, k_max=8, seed=0)
    if kind == "eagle":
        drafter = EagleDrafter(random_eagle_head(CFG, seed=1, std=0.3), policy, num_slots=5, max_len=config.cache_len)
    else:
        drafter = DraftModelDrafter(random_decoder(tiny_config(vocab_size=VOCAB, num_layers=2), seed=1, std=0.3),
                                    num_slots=5, max_len=config.cache_len)
    monkeypatch.setattr(drafter, "kernels", kernels)
    calls = []

    def counted(real):
        def call(*args):
            result = real(*args)
            calls.append(result is not None and result is not False)
            return result
        return call

    for module, name in ((eagle_chain, "catch_up"), (eagle_chain, "chain"), (draft_chain, "catch_up"), (draft_chain, "run")):
        monkeypatch.setattr(module, name, counted(getattr(module, name)))
    proposals = []
    real_propose = drafter.propose

    def propose(ctx, k):
        proposal = real_propose(ctx, k)
        proposals.append((proposal.tokens_BK.clone(), proposal.q_probs_BKV.clone()))
        return proposal

    monkeypatch.setattr(drafter, "propose", propose)
    engine = Engine(policy, config, drafter=drafter, depth=FixedDepth(k))
    requests = _requests(max_seq_len)
    if not swap:
        completions = engine.generate(requests)
    else:  # the drafter's weights copied in place between two halves, over the same caches
        completions = engine.generate(requests[:6])
        module = drafter.head if kind == "eagle" else drafter.model
        generator = torch.Generator().manual_seed(7)
        load_native(module, {name: t + 0.2 * torch.randn(t.shape, generator=generator)
                             for name, t in module.state_dict().items()})
        completions += engine.generate(requests[6:])
    return [(c.token_ids, c.logprobs, c.finish_reason, c.stats) for c in completions], proposals, sum(calls)


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("max_seq_len", [48, 20], ids=["roomy", "to-the-end"])
@pytest.mark.parametrize("kind", ["eagle", "draft_model"])
def test_chain_kernels_propose_what_the_python_loop_does(kind, k, max_seq_len, monkeypatch):
    fused, fused_proposals, fused_calls = _generate(kind, True, k, max_seq_len, monkeypatch)
    looped, looped_proposals, looped_calls = _generate(kind, False, k, max_seq_len, monkeypatch)
    assert fused_calls > 20 and looped_calls == 0  # the kernels ran on one side only
    # Drafts never change what is generated (lossless), so the proposals are compared themselves.
    assert len(fused_proposals) == len(looped_proposals)
    for (tokens, q), (want_tokens, want_q) in zip(fused_proposals, looped_proposals):
        assert torch.equal(tokens, want_tokens) and torch.equal(q, want_q)
    assert fused == looped


@pytest.mark.parametrize("kind", ["eagle", "draft_model"])
def test_chain_kernels_read_drafter_weights_updated_in_place(kind, monkeypatch):
    """The kernels' bound arguments are kept across proposals (eagle_chain._Head, fused_stack.Bound):
    weights copied in place (load_native, as draft refreshes arrive) must be what the next proposal reads."""
    fused, fused_proposals, _ = _generate(kind, True, 3, 48, monkeypatch, swap=True)
    looped, looped_proposals, _ = _generate(kind, False, 3, 48, monkeypatch, swap=True)
    assert len(fused_proposals) == len(looped_proposals)
    for (tokens, q), (want_tokens, want_q) in zip(fused_proposals, looped_proposals):
        assert torch.equal(tokens, want_tokens) and torch.equal(q, want_q)
    assert fused == looped
