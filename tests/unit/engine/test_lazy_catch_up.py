"""A drafter left alone through stretches of plain decoding catches up when speculation is next tried, and then
proposes what a twin kept current at every plain step proposes, given the same draws: rows admitted, finished and
moved while plain (their drafter state empty or not) included. A row move that drops the drafter's state fails."""

import dataclasses

import pytest
import torch

from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters.draft_model import DraftModelDrafter
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.models.random_models import random_decoder, random_eagle_head, tiny_config

CFG = tiny_config(vocab_size=20)
K = 3
# Plain stretches of 1-9 steps between speculative steps; rows finish, move and are admitted inside them.
SCHEDULE = [0] * 9 + [K] + [0] * 4 + [K] + [0] * 7 + [K, K] + [0] + [K] + [0] * 6 + [K]


def _drafter(kind, policy, config):
    if kind == "draft_model":
        draft = random_decoder(tiny_config(vocab_size=20, num_layers=1), seed=1, std=0.3).double()
        return DraftModelDrafter(draft, num_slots=config.max_batch_size, max_len=config.cache_len)
    head = random_eagle_head(CFG, seed=2, std=0.3).double()
    return EagleDrafter(head, policy, num_slots=config.max_batch_size, max_len=config.cache_len)


class Twins:
    """The engine's drafter (lazy: asked only at speculative steps) beside an eager twin that drafts one token at
    every plain step too (its catch-up then runs one token at a time). Both see every row event; at a speculative
    step both propose with the same draws and the pair is kept."""

    def __init__(self, lazy, eager):
        self.lazy, self.eager = lazy, eager
        self.pairs = []
        self.num_moves_while_held = 0  # row moves of a row whose lazy drafter state was not empty

    def __getattr__(self, name):
        return getattr(self.lazy, name)

    def propose(self, ctx, k):
        draws = ctx.draw_uniforms(k)
        fixed = dataclasses.replace(ctx, draw_uniforms=lambda n: draws)
        lazy, eager = self.lazy.propose(fixed, k), self.eager.propose(fixed, k)
        self.pairs.append((lazy, eager))
        return lazy

    def keep_eager_current(self, ctx):
        self.eager.propose(dataclasses.replace(ctx, draw_uniforms=lambda n: torch.zeros(ctx.num_rows, n)), 1)

    def commit(self, committed_lens):
        self.lazy.commit(committed_lens)
        self.eager.commit(committed_lens)

    def reset_row(self, row):
        self.lazy.reset_row(row)
        self.eager.reset_row(row)

    def move_row(self, src, dst):
        held = self.lazy.num_real if isinstance(self.lazy, EagleDrafter) else self.lazy.num_cached
        self.num_moves_while_held += held[src] > 0
        self.lazy.move_row(src, dst)
        self.eager.move_row(src, dst)

    def finish_row(self, row, group_id, token_ids):
        self.lazy.finish_row(row, group_id, token_ids)
        self.eager.finish_row(row, group_id, token_ids)


class Schedule:
    """Plays SCHEDULE (then K); before each plain step, keeps the eager twin current."""

    def __init__(self, twins):
        self.twins, self.engine, self.num_steps = twins, None, 0

    def choose_depth(self, batch_size, catch_up_tokens=0):
        k = SCHEDULE[self.num_steps] if self.num_steps < len(SCHEDULE) else K
        if k == 0:
            self.twins.keep_eager_current(self.engine._draft_context())
        return k

    def observe(self, batch_size, k, num_accepted, draft_time_s, target_time_s):
        self.num_steps += 1


def _run(kind, break_lazy_moves=False):
    policy = random_decoder(CFG, seed=0, std=0.3).double()
    config = EngineConfig(max_batch_size=3, max_seq_len=64, dtype="float64")
    twins = Twins(_drafter(kind, policy, config), _drafter(kind, policy, config))
    if break_lazy_moves:  # a row move that keeps the count but not the cache rows it counts
        twins.lazy.cache.move_row = lambda src, dst, length: None
    schedule = Schedule(twins)
    engine = Engine(policy, config, drafter=twins, depth=schedule)
    schedule.engine = engine
    requests = [Request(request_id=str(i), prompt_ids=tuple(range(1, 3 + 2 * i)),
                        params=SamplingParams(temperature=1.0, max_new_tokens=4 + 3 * i, seed=10 + i))
                for i in range(7)]
    engine.generate(requests)
    return twins


@pytest.mark.parametrize("kind", ["draft_model", "eagle"])
def test_a_lazily_caught_up_drafter_proposes_what_an_eagerly_kept_one_does(kind):
    twins = _run(kind)
    assert len(twins.pairs) >= 6 and twins.num_moves_while_held >= 1, (len(twins.pairs), twins.num_moves_while_held)
    for lazy, eager in twins.pairs:
        assert torch.equal(lazy.tokens_BK, eager.tokens_BK)
        torch.testing.assert_close(lazy.q_probs_BKV, eager.q_probs_BKV, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["draft_model", "eagle"])
def test_a_row_move_that_drops_the_drafters_state_is_caught(kind):
    twins = _run(kind, break_lazy_moves=True)
    assert any(not torch.allclose(lazy.q_probs_BKV, eager.q_probs_BKV, rtol=0, atol=1e-12)
               for lazy, eager in twins.pairs)


def test_eagle_rows_admitted_as_copies_of_a_held_prompt_carry_its_hidden_states():
    from tests.unit.engine.test_drafters import Recorder, reference_eagle

    policy = random_decoder(CFG, seed=0, std=0.3).double()
    config = EngineConfig(max_batch_size=3, max_seq_len=64, dtype="float64")
    recorder = Recorder(_drafter("eagle", policy, config))
    engine = Engine(policy, config, drafter=recorder, depth=FixedDepth(K))
    # Groups of three with one prompt each: later rows of a group are copies (cache, hidden states) of a held one,
    # and finished rows' places are taken by moves.
    requests = [Request(request_id=str(i), prompt_ids=tuple(range(1, 4 + 2 * (i // 3))), group_id=str(i // 3),
                        params=SamplingParams(temperature=0.0, max_new_tokens=3 + 4 * (i % 3))) for i in range(6)]
    engine.generate(requests)
    head = recorder.inner.head
    assert len(recorder.calls) > 5
    with torch.no_grad():
        for contexts, proposed in recorder.calls:
            for context, tokens in zip(contexts, proposed):
                assert tokens == reference_eagle(head, policy, context, K), f"context {context}"
