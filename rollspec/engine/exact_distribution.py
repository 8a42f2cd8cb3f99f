"""The exact distribution of short continuations under plain autoregressive sampling, by
enumeration: the reference that statistical losslessness tests compare speculative output to.

Shape legend: N enumerated prefixes, T tokens, V vocab.
"""

from __future__ import annotations

import torch

from rollspec.engine.model import Decoder
from rollspec.engine.sampler import SamplingTensors, processed_probs
from rollspec.engine.sampling_params import SamplingParams


@torch.no_grad()
def continuation_distribution(model: Decoder, prompt_ids: list[int], params: SamplingParams,
                              length: int) -> dict[tuple[int, ...], float]:
    """P(first `length` generated tokens) for every sequence with nonzero probability. Stop
    tokens are ignored (use params without them); cost grows as V**length, so keep both small."""
    prefixes: list[tuple[int, ...]] = [()]
    probs: list[float] = [1.0]
    for _ in range(length):
        ids_NT = torch.tensor([list(prompt_ids) + list(p) for p in prefixes])
        logits_N1V = model.logits(model(ids_NT)[:, -1:])
        sampling = SamplingTensors.from_params([params] * len(prefixes), ids_NT.device)
        next_NV = processed_probs(logits_N1V, sampling)[:, 0].double()
        rows, tokens = torch.nonzero(next_NV > 0, as_tuple=True)
        prefixes = [prefixes[r] + (t,) for r, t in zip(rows.tolist(), tokens.tolist())]
        probs = [probs[r] * p for r, p in zip(rows.tolist(), next_NV[rows, tokens].tolist())]
    return dict(zip(prefixes, probs))


def g_test_p_value(counts: dict[tuple[int, ...], int], exact: dict[tuple[int, ...], float]) -> float:
    """G-test of observed continuation counts against exact probabilities. Outcomes expected
    fewer than 5 times are pooled into one bin; an outcome with probability 0 gives p = 0."""
    if any(outcome not in exact for outcome in counts):
        return 0.0
    outcomes = sorted(exact)
    total = sum(counts.values())
    expected = torch.tensor([exact[o] for o in outcomes], dtype=torch.float64)
    expected = expected / expected.sum() * total
    observed = torch.tensor([counts.get(o, 0) for o in outcomes], dtype=torch.float64)
    keep = expected >= 5
    obs, exp = observed[keep], expected[keep]
    if (~keep).any():
        obs = torch.cat([obs, observed[~keep].sum()[None]])
        exp = torch.cat([exp, expected[~keep].sum()[None]])
    if len(obs) < 2:
        return 1.0
    statistic = 2.0 * torch.special.xlogy(obs, obs / exp).sum()
    # Survival function of chi-square with len-1 degrees of freedom.
    return float(torch.special.gammaincc(torch.tensor((len(obs) - 1) / 2.0, dtype=torch.float64), statistic / 2.0))
