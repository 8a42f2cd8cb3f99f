"""Requests admitted together with the same prompt (a GRPO group) prefill it once and copy its cache
rows (engine/shared_prompts.py): every completion, token and logprob, is what a separate prefill of
each request gives, with and without drafters that read the policy's hidden states."""

import dataclasses

import pytest

from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters.draft_model import DraftModelDrafter
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.engine.shared_prompts import prefill_plan
from rollspec.engine.weights import native_to_hf
from rollspec.models.random_models import random_decoder, random_eagle_head, tiny_config

CFG = tiny_config(vocab_size=40)


def _requests() -> list[Request]:
    prompts = [(1, 5, 7, 2, 9), (3, 3), (1, 5, 7, 2, 9, 11, 4), (6,)]
    out = []
    for g, prompt in enumerate(prompts):  # groups of 3 with one prompt, interleaved as a queue may hold them
        for j in range(3):
            params = SamplingParams(temperature=0.0 if g == 1 else 1.0, max_new_tokens=6 + 2 * j + g, seed=10 * g + j)
            out.append(Request(request_id=f"g{g}-{j}", prompt_ids=prompt, params=params, group_id=f"g{g}"))
    return out[::2] + out[1::2]


def test_prefill_plan_puts_one_of_each_prompt_no_row_holds_first():
    requests = _requests()
    ordered, num_prefilled, source = prefill_plan(requests, 5, {})
    assert sorted(r.request_id for r in ordered) == sorted(r.request_id for r in requests)
    assert num_prefilled == 4 and len({r.prompt_ids for r in ordered[:4]}) == 4
    assert all(ordered[i].prompt_ids == ordered[source[i] - 5].prompt_ids for i in range(len(ordered)))
    # A prompt a live row holds is copied from it, never prefilled.
    ordered, num_prefilled, source = prefill_plan(requests, 5, {(3, 3): 2})
    assert num_prefilled == 3 and all(r.prompt_ids != (3, 3) for r in ordered[:3])
    assert [row for r, row in zip(ordered, source) if r.prompt_ids == (3, 3)] == [2, 2, 2]
    assert prefill_plan(requests, 5, None) == (requests, len(requests), list(range(5, 5 + len(requests))))


@pytest.mark.parametrize("rows", [12, 5], ids=["one-admission", "continuous"])
@pytest.mark.parametrize("kind", [None, "eagle", "draft_model"])
def test_a_shared_prefill_generates_what_separate_prefills_do(kind, rows, monkeypatch):
    """12 rows: every request admitted at once, copies from rows prefilled in the same step; 5 rows:
    requests join as rows free up, and copy from live rows holding their prompt."""
    policy = random_decoder(CFG, seed=0, std=0.3)
    results = {}
    for share in (True, False):
        config = EngineConfig(max_batch_size=rows, max_seq_len=32, k_max=3, seed=0, share_prompt_prefill=share)
        drafter = None
        if kind == "eagle":
            drafter = EagleDrafter(random_eagle_head(CFG, seed=1, std=0.3), policy, num_slots=rows,
                                   max_len=config.cache_len)
        elif kind == "draft_model":
            drafter = DraftModelDrafter(random_decoder(CFG, seed=2, std=0.3), num_slots=rows, max_len=config.cache_len)
        prefilled = []  # rows of each prefill forward (every cache position from 0)
        real = policy.forward

        def counting(ids, **kw):
            if int(kw["batch"].positions_BT[:, 0].max()) == 0:
                prefilled.append(ids.shape[0])
            return real(ids, **kw)

        monkeypatch.setattr(policy, "forward", counting)
        engine = Engine(policy, config, drafter=drafter, depth=FixedDepth(2 if drafter else 0))
        completions = engine.generate(_requests())
        monkeypatch.undo()
        results[share] = ([dataclasses.astuple(c) for c in completions], sum(prefilled))
    assert results[True][0] == results[False][0]
    assert results[False][1] == 12
    assert results[True][1] == 4 if rows == 12 else 4 <= results[True][1] < 12  # prompts no row held


def test_rows_prefilled_under_older_weights_are_not_copied():
    """A live row's prompt cache holds the policy of its admission: after a weight update a new request
    with that prompt is prefilled under the new weights, as without sharing."""
    results = {}
    for share in (True, False):
        policy = random_decoder(CFG, seed=0, std=0.3)
        engine = Engine(policy, EngineConfig(max_batch_size=4, max_seq_len=32, k_max=0, seed=0,
                                             share_prompt_prefill=share), depth=FixedDepth(0))
        long = SamplingParams(temperature=1.0, max_new_tokens=20, seed=1)
        engine.add_request(Request(request_id="old", prompt_ids=(1, 5, 7), params=long))
        engine.step()
        new_weights = random_decoder(CFG, seed=9, std=0.3)
        engine.update_policy(native_to_hf(new_weights), version=1)
        engine.add_request(Request(request_id="new", prompt_ids=(1, 5, 7), params=dataclasses.replace(long, seed=2)))
        results[share] = [dataclasses.astuple(c) for c in _drain(engine)]
    assert [c[0] for c in results[True]] == ["new", "old"]
    assert results[True] == results[False]


def _drain(engine):
    done = []
    while engine.has_unfinished():
        done += engine.step()
    return sorted(done, key=lambda c: c.request_id)
