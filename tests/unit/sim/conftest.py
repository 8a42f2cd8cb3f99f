"""Small known costs for simulator tests: step times linear in batch size, given as profile tables."""

from types import SimpleNamespace

import numpy as np
import pytest

from rollspec.sim.rollout import ReplicaConfig, ReplicaSim
from rollspec.sim.speculation import Speculation, depth_policy
from rollspec.sim.table_cost import TableCost

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def linear_cost(*, fixed_s=1.0, per_row_s=0.5, per_token_s=0.0, draft_s=0.0, prefill_s=0.5, max_q=9):
    """c_target(B, q) = fixed + per_row * B + per_token * B * (q - 1); c_draft(B) = draft_s; prefill flat."""
    target = {(b, q): fixed_s + per_row_s * b + per_token_s * b * (q - 1) for b in BATCH_SIZES for q in range(1, max_q + 1)}
    return TableCost.single(target, {b: draft_s for b in BATCH_SIZES}, {b: prefill_s for b in BATCH_SIZES})


def make_replica(cost, mode=Speculation.PLAIN, *, alpha=0.7, fixed_k=4, k_max=8, max_num_seqs=64, sampled=False,
                 kv_capacity_tokens=float("inf"), seed=0):
    depth = depth_policy(mode, fixed_k=fixed_k, k_max=k_max, belief=cost)
    config = ReplicaConfig(max_num_seqs=max_num_seqs, prompt_tokens=4, kv_capacity_tokens=kv_capacity_tokens,
                           sampled_acceptance=sampled)
    return ReplicaSim(cost=cost, depth=depth, alphas=np.full(max(k_max, fixed_k), alpha), config=config,
                      rng=np.random.default_rng(seed))


@pytest.fixture(scope="session")
def simkit():
    return SimpleNamespace(linear_cost=linear_cost, make_replica=make_replica)
