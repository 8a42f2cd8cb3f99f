"""Drafter catch-up: where the forward is split, and that the width a drafter reports before a step is
the work its next proposal's catch-up really does (what the depth scheduler prices)."""

import pytest
import torch

from rollspec.engine.config import EngineConfig
from rollspec.engine.drafters import catch_up
from rollspec.engine.drafters.catch_up import catch_up_width, split_point
from rollspec.engine.drafters.draft_model import DraftModelDrafter
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.models.random_models import random_decoder, random_eagle_head, tiny_config

CFG = tiny_config(vocab_size=20)


def test_split_separates_a_wide_suffix_and_only_for_a_clear_saving():
    assert split_point([2, 1, 2, 2]) == 0
    assert split_point([2, 1, 2, 20, 18]) == 3  # admitted rows join at the end with their prompts
    assert catch_up_width([2, 1, 2, 20, 18]) == -(-(3 * 2 + 2 * 20) // 5)
    assert split_point([20, 2, 2, 2]) == 1
    assert split_point([5, 4, 5, 6]) == 0  # 20 padded tokens vs 24: under MIN_SAVING
    assert catch_up_width([5, 4, 5, 6]) == 6
    assert catch_up_width([]) == 0


class _Schedule:
    """Plays depths and keeps the catch-up width offered before each step."""

    def __init__(self, schedule):
        self.schedule, self.offered, self.steps = schedule, [], 0

    def choose_depth(self, batch_size, catch_up_tokens=0):
        self.offered.append((batch_size, catch_up_tokens))
        return self.schedule[min(self.steps, len(self.schedule) - 1)]

    def observe(self, batch_size, k, num_accepted, draft_time_s, target_time_s):
        self.steps += 1


class _Forwards:
    """Wraps a drafter's catch-up module and keeps the (rows, width) of every forward it runs."""

    def __init__(self, inner):
        self.inner, self.shapes = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, x, *args, **kwargs):
        self.shapes.append(tuple(x.shape[:2]))
        return self.inner(x, *args, **kwargs)

    def forward_cached(self, tokens, *args, **kwargs):  # the EAGLE head's generation entry (token ids in)
        self.shapes.append(tuple(tokens.shape[:2]))
        return self.inner.forward_cached(tokens, *args, **kwargs)


def _drafter(kind, policy, config, dtype=torch.float32):
    if kind == "eagle":
        head = random_eagle_head(CFG, seed=2, std=0.3).to(dtype)
        drafter = EagleDrafter(head, policy, num_slots=4, max_len=config.cache_len)
        # Forwards are counted in Python; the C catch-up runs the same row groups and widths
        # (test_draft_chains.py checks it proposes the same).
        drafter.kernels = False
        drafter.head = _Forwards(drafter.head)
        return drafter, drafter.head
    draft = random_decoder(tiny_config(vocab_size=20, num_layers=1), seed=1, std=0.3).to(dtype)
    drafter = DraftModelDrafter(draft, num_slots=4, max_len=config.cache_len)
    drafter.kernels = False  # as for EAGLE: test_draft_chains.py checks the C catch-up proposes the same
    drafter.model = _Forwards(drafter.model)
    return drafter, drafter.model


@pytest.mark.parametrize("kind", ["eagle", "draft_model"])
def test_reported_width_is_the_padded_work_of_the_next_catch_up(kind):
    policy = random_decoder(CFG, seed=0, std=0.3)
    config = EngineConfig(max_batch_size=4, max_seq_len=96, k_max=3)
    drafter, forwards = _drafter(kind, policy, config)
    depth = _Schedule([2, 0, 0, 0, 0, 3, 1, 0, 2, 3, 3, 0, 0, 2, 2, 2])
    engine = Engine(policy, config, drafter=drafter, depth=depth)
    # Short and long prompts, more requests than rows: rows are admitted mid-run with their whole prompt.
    requests = [Request(request_id=str(i), prompt_ids=tuple(range(1, 3 + 5 * (i % 3))),
                        params=SamplingParams(temperature=0.0, max_new_tokens=5 + 3 * i)) for i in range(7)]
    for request in requests:
        engine.add_request(request)
    widths_seen, split_seen = [], False
    while engine.has_unfinished():
        before = len(forwards.shapes)
        engine.step()
        if depth.offered and depth.schedule[min(depth.steps - 1, len(depth.schedule) - 1)] > 0:
            batch_size, offered = depth.offered[-1]
            # The catch-up forwards are the first of the proposal; drafting forwards have width 1.
            new = forwards.shapes[before:]
            catch_ups = [new[0]] + ([new[1]] if len(new) > 1 and new[0][0] < batch_size
                                    and new[0][0] + new[1][0] == batch_size else [])
            assert sum(rows for rows, _ in catch_ups) == batch_size
            padded = sum(rows * width for rows, width in catch_ups)
            assert offered == -(-padded // batch_size)
            widths_seen.append(offered)
            split_seen |= len(catch_ups) == 2
    assert max(widths_seen) > 4 and split_seen  # plain stretches and admissions were both exercised


@pytest.mark.parametrize("kind", ["eagle", "draft_model"])
def test_a_split_catch_up_proposes_what_one_padded_forward_would(kind, monkeypatch):
    policy = random_decoder(CFG, seed=0, std=0.3).double()
    config = EngineConfig(max_batch_size=4, max_seq_len=96, k_max=3, dtype="float64")

    splits = []
    monkeypatch.setattr(catch_up, "split_point", lambda num_new: splits.append(split_point(num_new)) or splits[-1])

    def proposals(min_saving):
        monkeypatch.setattr(catch_up, "MIN_SAVING", min_saving)
        drafter, _ = _drafter(kind, policy, config, torch.float64)
        seen = []
        propose = drafter.propose

        def recording(ctx, k):
            out = propose(ctx, k)
            seen.append(out.tokens_BK.tolist())
            return out

        drafter.propose = recording
        engine = Engine(policy, config, drafter=drafter, depth=_Schedule([3, 0, 0, 2, 3]))
        engine.generate([Request(request_id=str(i), prompt_ids=tuple(range(1, 3 + 5 * (i % 3))),
                                 params=SamplingParams(temperature=0.0, max_new_tokens=6 + 3 * i)) for i in range(7)])
        return seen

    with torch.no_grad():
        split = proposals(0.0)  # split wherever it saves anything
        assert any(splits)
        splits.clear()
        assert split == proposals(1.0) and not any(splits)  # never split


@pytest.mark.parametrize("kind", ["eagle", "draft_model"])
def test_a_speculative_step_splits_its_backlog_once_for_the_ask_and_the_proposal(kind, monkeypatch):
    policy = random_decoder(CFG, seed=0, std=0.3).double()
    config = EngineConfig(max_batch_size=4, max_seq_len=96, k_max=3, dtype="float64")
    asked = []
    monkeypatch.setattr(catch_up, "split_point", lambda num_new: asked.append(list(num_new)) or split_point(num_new))
    drafter, _ = _drafter(kind, policy, config, torch.float64)
    depth = _Schedule([2])
    with torch.no_grad():
        Engine(policy, config, drafter=drafter, depth=depth).generate(
            [Request(request_id=str(i), prompt_ids=tuple(range(1, 3 + 5 * (i % 3))),
                     params=SamplingParams(temperature=0.0, max_new_tokens=5 + 2 * i)) for i in range(6)])
    # Each backlog is split once: for the depth policy's ask, and propose reuses it (as may a next step's same ask).
    assert depth.steps > 5 and len(asked) <= depth.steps and all(a != b for a, b in zip(asked, asked[1:]))
