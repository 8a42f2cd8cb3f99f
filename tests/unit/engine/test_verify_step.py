"""The fused tail of a decode / verify step (engine/verify_step.py, kernels/verify_step.c): the same
accepted counts, emitted tokens and logprobs as the torch functions it replaces (project,
processed_probs, verify_torch, token_logprobs) on the same uniforms, and the engine takes it only
with the default verifier."""

import pytest
import torch

from rollspec.engine import cpu_kernels
from rollspec.engine import engine as engine_module
from rollspec.engine.cached_forward import project
from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters.draft_model import DraftModelDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.sampler import SamplingTensors, processed_probs, token_logprobs
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.engine.verify import verify, verify_torch
from rollspec.engine.verify_step import fused_tail
from rollspec.models.random_models import random_decoder, tiny_config

pytestmark = pytest.mark.skipif(not cpu_kernels.enabled(), reason="no C compiler or AVX-512F")

D, V = 32, 50
ROW_PARAMS = [SamplingParams(temperature=1.0), SamplingParams(temperature=0.0), SamplingParams(temperature=0.5),
              SamplingParams(temperature=1.7), SamplingParams(temperature=0.0), SamplingParams(temperature=1.0)]


def _inputs(seed: int, params: list[SamplingParams], K: int, *, deterministic: bool):
    gen = torch.Generator().manual_seed(seed)
    lm_head = torch.nn.Linear(D, V, bias=False)
    lm_head.weight.data = torch.randn(V, D, generator=gen) * 0.6
    B = len(params)
    hidden_BQD = torch.randn(B, K + 1, D, generator=gen)
    uniforms_BQ = torch.rand(B, K + 1, generator=gen)
    sampling = SamplingTensors.from_params(params, torch.device("cpu"))
    if K == 0:
        return lm_head, hidden_BQD, uniforms_BQ, sampling, None, None
    # Drafts near the policy (so that some are accepted, some rejected at every depth).
    q_BKV = processed_probs(project(hidden_BQD[:, :K], lm_head) + torch.randn(B, K, V, generator=gen), sampling)
    draft_BK = torch.multinomial(q_BKV.reshape(-1, V), 1, generator=gen).view(B, K)
    return lm_head, hidden_BQD, uniforms_BQ, sampling, draft_BK, None if deterministic else q_BKV


def _torch_tail(lm_head, hidden_BQD, uniforms_BQ, sampling, draft_BK, q_BKV):
    B, Q, _ = hidden_BQD.shape
    logits_BQV = project(hidden_BQD, lm_head)
    p_BQV = processed_probs(logits_BQV, sampling)
    draft = draft_BK if draft_BK is not None else torch.empty(B, 0, dtype=torch.long)
    num_accepted_B, next_B = verify_torch(p_BQV, q_BKV, draft, uniforms_BQ)
    emitted_BQ = torch.cat([draft, next_B[:, None]], dim=1)
    for b, n in enumerate(num_accepted_B.tolist()):
        emitted_BQ[b, n] = next_B[b]
    return num_accepted_B, emitted_BQ, token_logprobs(logits_BQV, p_BQV, emitted_BQ, sampling)


@pytest.mark.parametrize("K, deterministic", [(0, False), (1, False), (4, False), (4, True)],
                         ids=["decode", "k1", "k4", "k4-deterministic"])
@pytest.mark.parametrize("rows", [slice(0, 1), slice(1, 2), slice(0, 6)], ids=["t1", "greedy", "mixed"])
def test_same_tokens_and_logprobs_as_the_torch_functions(K, deterministic, rows):
    params = ROW_PARAMS[rows]
    num_positions = 0
    for seed in range(20):
        inputs = _inputs(seed, params, K, deterministic=deterministic)
        with torch.inference_mode():
            lm_head, hidden_BQD, uniforms_BQ, sampling, draft_BK, q_BKV = inputs
            got = fused_tail(hidden_BQD, lm_head, sampling, draft_BK, q_BKV, uniforms_BQ)
            expected = _torch_tail(*inputs)
        assert got is not None
        num_accepted_B, emitted_BQ, logprobs_BQ = got
        assert torch.equal(num_accepted_B, expected[0])
        for b, n in enumerate(num_accepted_B.tolist()):  # columns past the emitted token are never read
            assert torch.equal(emitted_BQ[b, : n + 1], expected[1][b, : n + 1])
            torch.testing.assert_close(logprobs_BQ[b, : n + 1], expected[2][b, : n + 1], rtol=1e-5, atol=1e-5)
            num_positions += n + 1
    if K:  # the draws covered both branches: drafts accepted and drafts rejected
        assert 20 * len(params) < num_positions < 20 * len(params) * (K + 1)


def test_truncation_and_other_dtypes_stay_on_torch():
    lm_head, hidden_BQD, uniforms_BQ, _, draft_BK, q_BKV = _inputs(0, ROW_PARAMS[:2], 2, deterministic=False)
    truncating = SamplingTensors.from_params([SamplingParams(temperature=0.8, top_p=0.9)] * 2, torch.device("cpu"))
    assert fused_tail(hidden_BQD, lm_head, truncating, draft_BK, q_BKV, uniforms_BQ) is None
    plain = SamplingTensors.from_params(ROW_PARAMS[:2], torch.device("cpu"))
    assert fused_tail(hidden_BQD.double(), lm_head, plain, draft_BK, q_BKV, uniforms_BQ) is None
    assert fused_tail(hidden_BQD, lm_head, plain, draft_BK, q_BKV, uniforms_BQ) is not None


def test_engine_takes_the_fused_tail_only_with_the_default_verifier(monkeypatch):
    """The statistical lossless tests run the engine with `verify` (so through this kernel) and with
    broken verifiers (which must then be called, not bypassed)."""
    cfg = tiny_config(vocab_size=V, hidden_size=D, intermediate_size=64, num_heads=2, num_kv_heads=1)
    policy, draft = random_decoder(cfg, seed=1), random_decoder(cfg, seed=2)
    taken, verifier_calls = [], []
    real = engine_module.fused_tail
    monkeypatch.setattr(engine_module, "fused_tail", lambda *a: taken.append(a[3] is not None) or real(*a))

    def counting_verify(*args):
        verifier_calls.append(1)
        return verify(*args)

    for verifier, via_kernel in ((verify, True), (counting_verify, False)):
        taken.clear()
        config = EngineConfig(max_batch_size=4, max_seq_len=24, k_max=4, seed=0)
        engine = Engine(policy, config, drafter=DraftModelDrafter(draft, num_slots=4, max_len=config.cache_len),
                        depth=FixedDepth(3), verifier=verifier)
        params = SamplingParams(temperature=1.0, max_new_tokens=8)
        engine.generate([Request(request_id=str(i), prompt_ids=(1, 2, 3), params=params) for i in range(4)])
        assert (True in taken) == via_kernel  # a verify step went through the kernel
    assert verifier_calls
