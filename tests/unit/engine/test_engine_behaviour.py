"""Continuous batching, stop tokens, budgets, seeds, weight updates and bad input."""

import pytest
import torch

from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters.ngram import NgramDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.errors import InvalidRequestError, PromptTooLongError, WeightUpdateError
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.engine.weights import native_to_hf
from rollspec.models.random_models import random_decoder, tiny_config

CFG = tiny_config(vocab_size=30)


@pytest.fixture()
def policy():
    return random_decoder(CFG, seed=0, std=0.3)


def _request(i, max_new=10, prompt=None, **params):
    prompt_ids = (1, 2, 3 + i % 5) if prompt is None else prompt
    return Request(request_id=f"r{i}", prompt_ids=prompt_ids, params=SamplingParams(max_new_tokens=max_new, **params))


def test_new_requests_join_while_others_run(policy):
    engine = Engine(policy, EngineConfig(max_batch_size=4, max_seq_len=64))
    for i in range(4):
        engine.add_request(_request(i, max_new=3 + 6 * i))
    finished, live_per_step = [], []
    late_added = False
    while engine.has_unfinished():
        finished += engine.step()
        live_per_step.append(len(engine.rows))
        if finished and not late_added:
            engine.add_request(_request(9, max_new=5))  # joins the running batch at the next step
            late_added = True
    assert sorted(c.request_id for c in finished) == ["r0", "r1", "r2", "r3", "r9"]
    assert max(live_per_step) == 4
    late = next(c for c in finished if c.request_id == "r9")
    assert len(late.token_ids) == 5 and late.finish_reason == "length"


def test_more_requests_than_rows_are_queued(policy):
    engine = Engine(policy, EngineConfig(max_batch_size=3, max_seq_len=64))
    completions = engine.generate([_request(i, max_new=4 + i) for i in range(10)])
    assert [len(c.token_ids) for c in completions] == [4 + i for i in range(10)]


def test_stop_token_ends_a_sequence_and_is_kept(policy):
    plain = Engine(policy, EngineConfig(max_batch_size=2, max_seq_len=64)).generate(
        [_request(0, max_new=20, temperature=0.0)])[0]
    stop = plain.token_ids[5]
    first = plain.token_ids.index(stop)
    for drafter in (None, NgramDrafter(num_slots=2, min_n=1)):
        engine = Engine(policy, EngineConfig(max_batch_size=2, max_seq_len=64), drafter=drafter, depth=FixedDepth(4))
        got = engine.generate([_request(0, max_new=20, temperature=0.0, stop_token_ids=(stop,))])[0]
        assert got.token_ids == plain.token_ids[: first + 1]
        assert got.finish_reason == "stop"
        assert len(got.logprobs) == len(got.token_ids)


def test_same_seed_same_output_regardless_of_batch(policy):
    alone = Engine(policy, EngineConfig(max_batch_size=1, max_seq_len=64)).generate([_request(0, seed=5)])[0]
    crowd = Engine(policy, EngineConfig(max_batch_size=8, max_seq_len=64)).generate(
        [_request(i, seed=100 + i) for i in range(1, 6)] + [_request(0, seed=5)])[-1]
    assert alone.token_ids == crowd.token_ids


def test_bad_requests_get_clear_errors(policy):
    engine = Engine(policy, EngineConfig(max_batch_size=2, max_seq_len=16))
    with pytest.raises(PromptTooLongError, match="exceeds max_seq_len 16"):
        engine.add_request(Request(request_id="long", prompt_ids=tuple(range(10)),
                                   params=SamplingParams(max_new_tokens=8)))
    with pytest.raises(InvalidRequestError, match="empty prompt"):
        engine.add_request(Request(request_id="empty", prompt_ids=()))
    with pytest.raises(InvalidRequestError, match="outside"):
        engine.add_request(Request(request_id="oov", prompt_ids=(1, 30), params=SamplingParams(max_new_tokens=2)))
    engine.add_request(_request(0, max_new=4))
    with pytest.raises(InvalidRequestError, match="already in flight"):
        engine.add_request(_request(0, max_new=4))


def test_context_longer_than_model_positions_is_refused():
    small = random_decoder(tiny_config(vocab_size=30, max_position_embeddings=32), seed=0)
    with pytest.raises(PromptTooLongError, match="max_position_embeddings"):
        Engine(small, EngineConfig(max_batch_size=2, max_seq_len=64))


def test_weight_update_changes_output_and_bad_update_keeps_old_weights(policy):
    engine = Engine(policy, EngineConfig(max_batch_size=2, max_seq_len=64))
    prompt = (4, 9, 1)
    before = engine.generate([_request(0, prompt=prompt, temperature=0.0)])[0]
    other = native_to_hf(random_decoder(CFG, seed=1, std=0.3))
    bad = dict(other)
    bad["model.layers.0.mlp.down_proj.weight"] = torch.zeros(3, 3)
    with pytest.raises(WeightUpdateError, match="wrong shapes"):
        engine.update_policy(bad, version=1)
    assert engine.generate([_request(1, prompt=prompt, temperature=0.0)])[0].token_ids == before.token_ids
    with pytest.raises(WeightUpdateError, match="missing"):
        engine.update_policy({k: v for k, v in other.items() if "norm" not in k}, version=1)
    engine.update_policy(other, version=1)
    after = engine.generate([_request(2, prompt=prompt, temperature=0.0)])[0]
    assert after.policy_version == 1 and after.token_ids != before.token_ids
    with pytest.raises(WeightUpdateError, match="not newer"):
        engine.update_policy(other, version=1)
    reference = Engine(random_decoder(CFG, seed=1, std=0.3), EngineConfig(max_batch_size=2, max_seq_len=64))
    assert reference.generate([_request(3, prompt=prompt, temperature=0.0)])[0].token_ids == after.token_ids
