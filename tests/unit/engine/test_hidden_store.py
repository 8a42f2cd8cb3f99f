"""The engine's store of the policy's hidden states (engine/hidden_store.py): what a drafter reads for each row is
the policy's hidden states of that row's own tokens, at every position, through plain stretches, retires that move
rows into finished ones' places, admissions and shared prompts; the C forward stores what the torch forward stores,
a prompt copy is the same through C and torch, and the step's token record in C (engine/step_record.py) writes what
torch indexing writes."""

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
@pytest.mark.parametrize("num_tokens", [1, 4, 9], ids=["decode", "verify", "prefill"])
def test_the_c_forward_stores_the_hidden_states_the_torch_forward_stores(num_tokens, monkeypatch):
    policy = random_decoder(CFG, seed=0, std=0.3)
    ids_BT = torch.randint(0, 40, (4, num_tokens), generator=torch.Generator().manual_seed(3))
    batch = AttentionBatch.build(row_start=1, cache_lens=[3, 0, 9, 11], num_tokens=num_tokens, max_len=20,
                                 device=torch.device("cpu"), dtype=torch.float32)  # ragged, nothing clamped
    stores = []
    for kernels in (True, False):
        monkeypatch.setattr(cpu_kernels, "active", kernels)
        cache = policy.new_cache(num_slots=6, max_len=20)
        cache.hidden = _store(D=CFG.hidden_size)
        with torch.no_grad():
            hidden_BTD = policy(ids_BT, cache=cache, batch=batch)
        slots = cache.hidden.slots_S
        torch.testing.assert_close(cache.hidden.hidden_SMD[slots[batch.rows_BT], batch.positions_BT], hidden_BTD,
                                   rtol=0, atol=0)
        stores.append(cache.hidden.hidden_SMD)
    torch.testing.assert_close(stores[0], stores[1], rtol=1e-5, atol=1e-5)
    assert stores[0][_store().slots_S[0]].abs().sum() == 0  # row 0 is not in the batch: its slot stays empty


@pytest.mark.skipif(not cpu_kernels.enabled(), reason="no C compiler or AVX-512F")
def test_a_copied_prompt_is_the_same_through_the_kernel_and_torch(monkeypatch):
    stores = []
    for kernels in (True, False):
        monkeypatch.setattr(cpu_kernels, "active", kernels)
        store = _store()
        store.hidden_SMD.copy_(torch.randn(store.hidden_SMD.shape, generator=torch.Generator().manual_seed(5)))
        store.copy_prefix(1, 3, 7)
        stores.append(store.hidden_SMD)
    assert torch.equal(stores[0], stores[1])
    slots = _store().slots_S
    assert torch.equal(stores[0][slots[3], :7], stores[0][slots[1], :7])
    assert not torch.equal(stores[0][slots[3], 7:], stores[0][slots[1], 7:])


@pytest.mark.skipif(not cpu_kernels.enabled(), reason="no C compiler or AVX-512F")
def test_the_step_record_writes_the_tokens_torch_indexing_writes():
    tokens_SM = torch.randint(0, 40, (6, 20), generator=torch.Generator().manual_seed(3))
    expected_SM = tokens_SM.clone()
    for num_tokens in (1, 4):
        batch = AttentionBatch.build(row_start=1, cache_lens=[3, 0, 9, 15], num_tokens=num_tokens, max_len=20,
                                     device=torch.device("cpu"), dtype=torch.float32)
        next_BT = torch.randint(0, 40, (4, num_tokens), generator=torch.Generator().manual_seed(num_tokens))
        assert StepRecord(tokens_SM).write(batch, next_BT)
        expected_SM[batch.rows_BT, batch.positions_BT + 1] = next_BT
        assert torch.equal(tokens_SM, expected_SM)


@pytest.mark.skipif(not cpu_kernels.enabled(), reason="no C compiler or AVX-512F")
def test_the_step_record_refuses_a_token_past_the_row_and_writes_nothing():
    tokens_SM = torch.zeros(2, 8, dtype=torch.long)
    batch = AttentionBatch.build(row_start=0, cache_lens=[2, 6], num_tokens=2, max_len=8, device=torch.device("cpu"),
                                 dtype=torch.float32)  # row 1 writes positions 6, 7: its next tokens would go to 7, 8
    assert not StepRecord(tokens_SM).write(batch, torch.ones(2, 2, dtype=torch.long))
    assert not tokens_SM.any()
