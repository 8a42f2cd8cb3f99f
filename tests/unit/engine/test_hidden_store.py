"""The engine's store of the policy's hidden states (engine/hidden_store.py): what a drafter reads for each row is
the policy's hidden states of that row's own tokens, at every position, through plain stretches, retires that move
rows into finished ones' places, admissions and shared prompts; and the step's record in C (engine/step_record.py)
writes what the torch indexing writes."""

import pytest
import torch

from rollspec.engine import cpu_kernels
from rollspec.engine.config import EngineConfig
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.hidden_store import HiddenStore
from rollspec.engine.kv_cache import AttentionBatch
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.engine.step_record import StepRecord
from rollspec.models.random_models import random_decoder, random_eagle_head, tiny_config

CFG = tiny_config(vocab_size=40)
K = 3
# Plain stretches between speculative steps: rows finish, move and are admitted inside them.
SCHEDULE = [0] * 4 + [K] + [0] * 2 + [K] + [0] * 6 + [K, K] + [0] + [K] + [0] * 3


class Schedule:
    def __init__(self):
        self.num_steps = 0

    def choose_depth(self, batch_size, catch_up_tokens=0):
        return SCHEDULE[self.num_steps % len(SCHEDULE)]

    def observe(self, batch_size, k, num_accepted, draft_time_s, target_time_s):
        self.num_steps += 1


def _seen_states(break_moves=False):
    """Every (tokens, stored states) pair an EAGLE drafter was shown at a proposal, for each row, and the number of
    proposals at which some row's states sat in another row's slot (moved, not copied)."""
    policy = random_decoder(CFG, seed=0, std=0.3)
    config = EngineConfig(max_batch_size=4, max_seq_len=48, k_max=K, seed=0)
    drafter = EagleDrafter(random_eagle_head(CFG, seed=1, std=0.3), policy, num_slots=4, max_len=config.cache_len)
    engine = Engine(policy, config, drafter=drafter, depth=Schedule())
    if break_moves:  # a move that leaves each row's states where they were
        engine.hidden.move_row = lambda src, dst: None
    seen, num_moved = [], 0
    real_propose = drafter.propose

    def propose(ctx, k):
        slots = ctx.hidden_slots_B.tolist()
        nonlocal num_moved
        num_moved += slots != list(range(ctx.num_rows))
        for b, n in enumerate(ctx.context_lens):
            seen.append((ctx.token_lists[b][: n - 1], ctx.hidden_SMD[slots[b], : n - 1].clone()))
        return real_propose(ctx, k)

    drafter.propose = propose
    prompts = [(1, 5, 7, 2, 9), (3, 3), (1, 5, 7, 2, 9), (6,), (4, 8, 8, 1), (3, 3), (2, 7, 1, 1, 5, 9), (6,)] * 2
    requests = [Request(request_id=str(i), prompt_ids=p, group_id=str(p),
                        params=SamplingParams(temperature=1.0, max_new_tokens=6 + (7 * i) % 23, seed=50 + i))
                for i, p in enumerate(prompts)]
    engine.generate(requests)
    return policy, seen, num_moved


@torch.no_grad()
def test_a_drafter_reads_each_rows_own_hidden_states_after_rows_move():
    policy, seen, num_moved = _seen_states()
    assert len(seen) > 40 and num_moved >= 3, (len(seen), num_moved)
    for tokens, states_TD in seen:
        expected_TD = policy(torch.tensor([tokens]))[0]  # the uncached forward over the row's own tokens
        torch.testing.assert_close(states_TD, expected_TD, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_a_move_that_leaves_the_states_behind_is_caught():
    policy, seen, _ = _seen_states(break_moves=True)
    assert any(not torch.allclose(states_TD, policy(torch.tensor([tokens]))[0], rtol=1e-4, atol=1e-4)
               for tokens, states_TD in seen)


def _store(S=6, M=20, D=32):
    store = HiddenStore(num_slots=S, max_len=M, hidden_size=D, dtype=torch.float32, device=torch.device("cpu"))
    store.move_row(4, 1)  # rows in other rows' slots
    store.move_row(5, 0)
    return store


@pytest.mark.skipif(not cpu_kernels.enabled(), reason="no C compiler or AVX-512F")
@pytest.mark.parametrize("num_tokens", [1, 4], ids=["decode", "verify"])
@pytest.mark.parametrize("with_hidden", [True, False], ids=["hidden", "plain"])
def test_the_step_record_writes_what_torch_indexing_writes(num_tokens, with_hidden):
    S, M, D, B = 6, 20, 32, 4
    gen = torch.Generator().manual_seed(3)
    stores = [_store(S, M, D) if with_hidden else None for _ in range(2)]
    tokens_SM = torch.randint(0, 40, (S, M), generator=gen)
    expected_SM = tokens_SM.clone()
    batch = AttentionBatch.build(row_start=1, cache_lens=[3, 0, 9, 15], num_tokens=num_tokens, max_len=M,
                                 device=torch.device("cpu"), dtype=torch.float32)
    hidden_BTD = torch.randn(B, num_tokens, D, generator=gen)
    next_BT = torch.randint(0, 40, (B, num_tokens), generator=gen)
    assert StepRecord(tokens_SM, stores[0]).write(batch, next_BT, hidden_BTD)
    expected_SM[batch.rows_BT, batch.positions_BT + 1] = next_BT
    assert torch.equal(tokens_SM, expected_SM)
    if with_hidden:
        stores[1].write(batch, hidden_BTD)
        assert torch.equal(stores[0].hidden_SMD, stores[1].hidden_SMD) and stores[0].hidden_SMD.abs().sum() > 0


@pytest.mark.skipif(not cpu_kernels.enabled(), reason="no C compiler or AVX-512F")
def test_an_admissions_prompts_are_written_by_the_kernel_as_by_torch(monkeypatch):
    """Rows 1-5: two prefilled, two copies of the first, one copied from a live row (source -1: not written)."""
    hidden_BTD = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(4))
    sources, lengths = [0, 1, 0, -1, 0], [7, 4, 7, 5, 7]
    fused, looped = _store(), _store()
    fused.write_prompts(1, hidden_BTD, sources, lengths)
    monkeypatch.setattr(cpu_kernels, "active", False)
    looped.write_prompts(1, hidden_BTD, sources, lengths)
    assert torch.equal(fused.hidden_SMD, looped.hidden_SMD)
    slots = fused.slots_S.tolist()
    assert torch.equal(fused.hidden_SMD[slots[3], :7], hidden_BTD[0]) and not fused.hidden_SMD[slots[4]].any()
    assert torch.equal(fused.hidden_SMD[slots[2], :4], hidden_BTD[1, :4]) and not fused.hidden_SMD[slots[2], 4:].any()


@pytest.mark.skipif(not cpu_kernels.enabled(), reason="no C compiler or AVX-512F")
def test_the_step_record_refuses_a_token_past_the_row_and_writes_nothing():
    store = HiddenStore(num_slots=2, max_len=8, hidden_size=16, dtype=torch.float32, device=torch.device("cpu"))
    tokens_SM = torch.zeros(2, 8, dtype=torch.long)
    batch = AttentionBatch.build(row_start=0, cache_lens=[2, 6], num_tokens=2, max_len=8, device=torch.device("cpu"),
                                 dtype=torch.float32)  # row 1 writes positions 6, 7: its next tokens would go to 7, 8
    assert not StepRecord(tokens_SM, store).write(batch, torch.ones(2, 2, dtype=torch.long), torch.ones(2, 2, 16))
    assert not tokens_SM.any() and not store.hidden_SMD.any()
