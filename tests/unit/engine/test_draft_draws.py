"""A drafter's draws (drafters/draws.py): through the C kernel or torch, each draft token is drawn
from exactly the q the proposal reports, and q is the processed distribution of the drafter's
logits (up to float rounding on the kernel's softmax)."""

import pytest
import torch

from rollspec.engine import cpu_kernels
from rollspec.engine.cached_forward import project
from rollspec.engine.drafters.draws import DraftDraws
from rollspec.engine.sampler import SamplingTensors, processed_probs, sample_from_torch
from rollspec.engine.sampling_params import SamplingParams

B, K, D, V = 6, 3, 32, 50
ROW_PARAMS = [SamplingParams(temperature=1.0), SamplingParams(temperature=0.0), SamplingParams(temperature=0.5),
              SamplingParams(temperature=1.7), SamplingParams(temperature=0.0), SamplingParams(temperature=1.0)]


def _lm_head(seed: int) -> torch.nn.Linear:
    torch.manual_seed(seed)
    head = torch.nn.Linear(D, V, bias=False)
    head.weight.data.mul_(4.0)
    return head


@pytest.mark.parametrize("kernels", [True, False], ids=["kernel", "torch"])
@pytest.mark.parametrize("rows", [slice(0, 1), slice(2, 3), slice(0, B), slice(1, 2)], ids=["t1", "t0.5", "mixed", "greedy"])
def test_each_draw_comes_from_the_reported_q(kernels, rows):
    if kernels and not cpu_kernels.enabled():
        pytest.skip("no C compiler or AVX-512F")
    params = ROW_PARAMS[rows]
    sampling = SamplingTensors.from_params(params, torch.device("cpu"))
    gen = torch.Generator().manual_seed(3)
    lm_head, n = _lm_head(0), len(params)
    uniforms_BK = torch.rand(n, K, generator=gen)
    cpu_kernels.set_enabled(kernels)
    try:
        with torch.inference_mode():
            draws = DraftDraws(lm_head, sampling, uniforms_BK)
            assert (draws.lm_packed is not None) == kernels
            hidden = [torch.randn(n, 1, D, generator=gen) for _ in range(K)]
            tokens = [draws.draw(j, hidden[j]) for j in range(K)]
    finally:
        cpu_kernels.set_enabled(True)
    for j in range(K):
        q_B1V = draws.q_BKV[:, j: j + 1]
        expected = processed_probs(project(hidden[j], lm_head), sampling)
        torch.testing.assert_close(q_B1V, expected, rtol=1e-5, atol=1e-6)
        # The token is the inverse-CDF draw from the reported q with this position's uniform.
        assert torch.equal(tokens[j], sample_from_torch(q_B1V.contiguous(), uniforms_BK[:, j: j + 1]))
        assert torch.equal(draws.tokens_BK[:, j: j + 1], tokens[j])
    greedy = sampling.is_greedy_B
    assert ((draws.q_BKV[greedy] == 1.0).sum(-1) == 1).all()


def test_truncating_params_stay_on_torch():
    sampling = SamplingTensors.from_params([SamplingParams(temperature=0.8, top_k=5)], torch.device("cpu"))
    draws = DraftDraws(_lm_head(1), sampling, torch.rand(1, K))
    assert draws.lm_packed is None
