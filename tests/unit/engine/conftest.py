"""What the engine's losslessness tests share: the deliberately broken acceptance rules each test
must catch, the p-value floor, and the small sampling set-up the end-to-end tests enumerate."""

import torch

from rollspec.engine.sampler import sample_from
from rollspec.engine.verify import verify
from rollspec.models.random_models import tiny_config

P_VALUE_FLOOR = 1e-4  # fixed seeds make every test deterministic; this bounds false alarms if seeds change

# End-to-end sampling: continuations short enough to enumerate exactly, sampled often enough to test.
VOCAB, LENGTH, NUM_SAMPLES, BATCH = 8, 3, 12_000, 512
CFG = tiny_config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1)
PROMPT = (1, 4, 2, 6)


def verify_without_residual(p_probs_BQV, q_probs_BKV, draft_BK, uniforms_BQ):
    """Broken: after a rejection, resample from p instead of the residual max(p - q, 0)."""
    num_accepted, _ = verify(p_probs_BQV, q_probs_BKV, draft_BK, uniforms_BQ)
    rows = torch.arange(len(num_accepted))
    return num_accepted, sample_from(p_probs_BQV[rows, num_accepted][:, None], uniforms_BQ[:, -1:])[:, 0]


def verify_accepting_everything(p_probs_BQV, q_probs_BKV, draft_BK, uniforms_BQ):
    """Broken: compares the draft with itself (p's role played by q), so every draft passes."""
    K = draft_BK.shape[1]
    q_as_p_BQV = torch.cat([q_probs_BKV, p_probs_BQV[:, K:]], dim=1)
    return verify(q_as_p_BQV, q_probs_BKV, draft_BK, uniforms_BQ)


def verify_inverted_ratio(p_probs_BQV, q_probs_BKV, draft_BK, uniforms_BQ):
    """Broken: accepts with min(1, q/p) instead of min(1, p/q); the residual step is correct."""
    K = draft_BK.shape[1]
    rows = torch.arange(len(draft_BK))
    p_d = p_probs_BQV[:, :K].gather(-1, draft_BK[..., None])[..., 0]
    q_d = q_probs_BKV.gather(-1, draft_BK[..., None])[..., 0]
    num_accepted = (uniforms_BQ[:, :K] * p_d < q_d).int().cumprod(-1).sum(-1)
    p_next = p_probs_BQV[rows, num_accepted]
    residual = (p_next - q_probs_BKV[rows, num_accepted.clamp(max=K - 1)]).clamp(min=0)
    use_residual = (num_accepted < K) & (residual.sum(-1) > 0)
    next_dist = torch.where(use_residual[:, None], residual, p_next)
    return num_accepted, sample_from(next_dist[:, None], uniforms_BQ[:, K:])[:, 0]


def continuation_counts(completions) -> tuple[dict[tuple[int, ...], int], int]:
    """How often each continuation came out, and how many drafted tokens were rejected on the way."""
    counts: dict[tuple[int, ...], int] = {}
    for completion in completions:
        counts[completion.token_ids] = counts.get(completion.token_ids, 0) + 1
    return counts, sum(c.stats.num_drafted - c.stats.num_accepted for c in completions)
