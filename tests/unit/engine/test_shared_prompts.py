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


def test_prefill_plan_puts_one_of_each_prompt_first():
    requests = _requests()
    ordered, num_prefilled, source = prefill_plan(requests, share=True)
    assert sorted(r.request_id for r in ordered) == sorted(r.request_id for r in requests)
    assert num_prefilled == 4 and len({r.prompt_ids for r in ordered[:4]}) == 4
    assert all(ordered[i].prompt_ids == ordered[source[i]].prompt_ids for i in range(len(ordered)))
    assert prefill_plan(requests, share=False) == (requests, len(requests), list(range(len(requests))))


@pytest.mark.parametrize("kind", [None, "eagle", "draft_model"])
def test_a_shared_prefill_generates_what_separate_prefills_do(kind, monkeypatch):
    policy = random_decoder(CFG, seed=0, std=0.3)
    results = {}
    for share in (True, False):
        config = EngineConfig(max_batch_size=12, max_seq_len=32, k_max=3, seed=0, share_prompt_prefill=share)
        drafter = None
        if kind == "eagle":
            drafter = EagleDrafter(random_eagle_head(CFG, seed=1, std=0.3), policy, num_slots=12,
                                   max_len=config.cache_len)
        elif kind == "draft_model":
            drafter = DraftModelDrafter(random_decoder(CFG, seed=2, std=0.3), num_slots=12, max_len=config.cache_len)
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
    assert results[False][1] == 12 and results[True][1] == 4  # one prefill row per distinct prompt
