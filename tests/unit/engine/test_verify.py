"""The acceptance rule on its own: emitted tokens follow the target distribution at every
position, for stochastic and deterministic drafters; deliberately broken rules are caught."""

import pytest
import torch
from scipy.stats import power_divergence

from rollspec.engine import cpu_kernels
from rollspec.engine.verify import verify, verify_torch

from .conftest import P_VALUE_FLOOR, verify_accepting_everything, verify_inverted_ratio, verify_without_residual

N, K, V = 200_000, 3, 6


def g_test(observed: torch.Tensor, expected_probs: torch.Tensor) -> float:
    """G-test p-value; bins expected below 5 are pooled, and any count where the target has
    probability 0 fails outright."""
    observed = observed.double()
    expected_probs = expected_probs.double()
    if observed[expected_probs == 0].sum() > 0:
        return 0.0
    expected = expected_probs / expected_probs.sum() * observed.sum()
    keep = expected >= 5
    obs, exp = observed[keep], expected[keep]
    if expected[~keep].sum() > 0:
        obs = torch.cat([obs, observed[~keep].sum()[None]])
        exp = torch.cat([exp, expected[~keep].sum()[None]])
    return float(power_divergence(obs.numpy(), exp.numpy(), lambda_="log-likelihood").pvalue)


def _setup(seed: int, deterministic: bool):
    gen = torch.Generator().manual_seed(seed)
    p_QV = torch.softmax(2.0 * torch.randn(K + 1, V, generator=gen), dim=-1)
    p_QV[0, 0] = 0.0  # a token the target never emits, which the draft proposes
    p_QV = p_QV / p_QV.sum(-1, keepdim=True)
    q_KV = torch.softmax(2.0 * torch.randn(K, V, generator=gen), dim=-1)
    draft_NK = torch.stack([torch.multinomial(q_KV[j], N, replacement=True, generator=gen) for j in range(K)], dim=1)
    uniforms_NQ = torch.rand(N, K + 1, generator=gen)
    # Contiguous copies: `verify` takes its C kernel (fp32 CPU) only on contiguous tensors.
    p_NQV = p_QV.expand(N, -1, -1).contiguous()
    q_NKV = None if deterministic else q_KV.expand(N, -1, -1).contiguous()
    return p_QV, p_NQV, q_NKV, draft_NK, uniforms_NQ


def _position_p_values(verifier, seed: int, deterministic: bool) -> list[float]:
    p_QV, p_NQV, q_NKV, draft_NK, uniforms_NQ = _setup(seed, deterministic)
    num_accepted, next_token = verifier(p_NQV, q_NKV, draft_NK, uniforms_NQ)
    emitted_NQ = torch.cat([draft_NK, draft_NK[:, :1]], dim=1).scatter_(1, num_accepted[:, None], next_token[:, None])
    p_values = []
    for j in range(K + 1):
        reached = num_accepted >= j  # position j is emitted iff the j drafts before it were accepted
        counts = torch.bincount(emitted_NQ[reached, j], minlength=V)
        p_values.append(g_test(counts, p_QV[j]))
    return p_values


# `verify` runs its C kernel here when the kernels load (cpu_kernels.active), `verify_torch` never does.
VERIFIERS = [pytest.param(verify, id="verify"), pytest.param(verify_torch, id="verify_torch")]


@pytest.mark.parametrize("verifier", VERIFIERS)
@pytest.mark.parametrize("deterministic", [False, True], ids=["sampled-draft", "deterministic-draft"])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_position_follows_the_target(seed, deterministic, verifier):
    assert min(_position_p_values(verifier, seed, deterministic)) > P_VALUE_FLOOR


@pytest.mark.skipif(not cpu_kernels.enabled(), reason="no C compiler or AVX-512F: verify is verify_torch")
@pytest.mark.parametrize("deterministic", [False, True], ids=["sampled-draft", "deterministic-draft"])
def test_kernel_matches_torch_rule_exactly(deterministic):
    _, p_NQV, q_NKV, draft_NK, uniforms_NQ = _setup(2, deterministic)
    kernel, reference = verify(p_NQV, q_NKV, draft_NK, uniforms_NQ), verify_torch(p_NQV, q_NKV, draft_NK, uniforms_NQ)
    assert torch.equal(kernel[0], reference[0]) and torch.equal(kernel[1], reference[1])


@pytest.mark.parametrize("broken", [verify_without_residual, verify_accepting_everything, verify_inverted_ratio])
def test_broken_rules_are_caught(broken):
    assert min(_position_p_values(broken, 0, False)) < 1e-12


def test_deterministic_draft_broken_residual_is_caught():
    assert min(_position_p_values(verify_without_residual, 0, True)) < 1e-12


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_greedy_accepts_exactly_the_matching_prefix(verifier):
    p_QV = torch.zeros(4, V).scatter_(1, torch.tensor([[2], [3], [4], [5]]), 1.0)
    draft = torch.tensor([[2, 3, 0], [2, 1, 4], [0, 3, 4], [2, 3, 4]])
    num_accepted, next_token = verifier(p_QV.expand(4, -1, -1).contiguous(), None, draft, torch.rand(4, 4))
    assert num_accepted.tolist() == [2, 1, 0, 3]
    assert next_token.tolist() == [4, 3, 2, 5]
