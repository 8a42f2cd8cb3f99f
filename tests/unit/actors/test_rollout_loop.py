"""The rollout loop over in-process queues and broadcasts with a tiny random engine: groups become
records carrying the versions that made them, weights swap only between generations, bad prompts
become dropped records, and nothing is acked before its records are sent."""

import dataclasses

import pytest
import torch

from rollspec.actors.config import PROMPTS, TRAJECTORIES
from rollspec.actors.messages import DROP_LENGTH, PromptGroup, RolloutRecord
from rollspec.actors.rollout_loop import RolloutLoop, SamplingDefaults
from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters.draft_model import DraftModelDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.weights import native_to_hf
from rollspec.models.random_models import random_decoder, tiny_config
from rollspec.rl.vocab import EOS_ID, VOCAB_SIZE
from rollspec.transport import InProcBroadcast, InProcQueue, QueueConfig

MAX_SEQ_LEN = 48


@pytest.fixture
def rig():
    policy = random_decoder(tiny_config(vocab_size=VOCAB_SIZE), seed=0, std=0.05)
    draft = random_decoder(tiny_config(vocab_size=VOCAB_SIZE, num_layers=1), seed=1, std=0.05)
    config = EngineConfig(max_batch_size=8, max_seq_len=MAX_SEQ_LEN, k_max=3)
    engine = Engine(policy, config, drafter=DraftModelDrafter(draft, num_slots=8, max_len=config.cache_len),
                    depth=FixedDepth(3))
    prompts, trajectories = InProcQueue(QueueConfig(name=PROMPTS)), InProcQueue(QueueConfig(name=TRAJECTORIES))
    policy_weights, draft_weights = InProcBroadcast(), InProcBroadcast()
    changes = []
    loop = RolloutLoop(engine, prompts=prompts.receiver(), trajectories=trajectories.sender(),
                       sampling=SamplingDefaults(max_new_tokens=12, stop_token_ids=(EOS_ID,)), name="r0",
                       group_size=2, policy_weights=policy_weights.sink(), draft_weights=draft_weights.sink(),
                       on_weights_changed=lambda: changes.append(1))
    return dataclasses.make_dataclass("Rig", ["loop", "engine", "prompts", "trajectories", "policy_weights",
                                              "draft_weights", "out", "changes", "policy", "draft"])(
        loop, engine, prompts.sender(), trajectories, policy_weights, draft_weights, trajectories.receiver(),
        changes, policy, draft)


def group(index: int, length: int = 6, group_size: int = 2) -> PromptGroup:
    return PromptGroup(prompt_id=f"p{index}", prompt_index=index, token_ids=[1] + [10 + index] * (length - 2) + [3],
                       group_size=group_size, policy_version=0, seed=100 * index, issued_at=1.0)


def run_until_idle(rig, num_records: int, max_iterations: int = 1000) -> list[RolloutRecord]:
    records = []
    for _ in range(max_iterations):
        rig.loop.run_once(idle_wait_s=0.0)
        records += [d.item for d in rig.out.get_batch(1000, timeout_s=0.0)]
        if len(records) >= num_records and not rig.engine.has_unfinished():
            break
    return records


def test_groups_become_records_with_versions_and_speculation_counts(rig):
    for index in range(3):
        rig.prompts.put(group(index), msg_id=f"p{index}")
    records = run_until_idle(rig, 6)
    assert sorted(r.msg_id for r in records) == [f"p{i}/{j}" for i in range(3) for j in range(2)]
    for record in records:
        assert record.policy_version == 0 and record.draft_version == 0
        assert len(record.logprobs) == len(record.token_ids) > 0
        assert record.num_verify_steps == record.proposed_per_position[0]
        # A sample that stops at its first token (drawn at admission) never reaches a verify step.
        assert record.num_verify_steps > 0 or record.token_ids == [EOS_ID]
    assert sum(r.num_verify_steps for r in records) > 0
    assert rig.loop.stats.num_acked == 3 and rig.loop.stats.num_completions == 6


def test_same_prompt_same_seed_same_samples(rig):
    rig.prompts.put(group(0), msg_id="p0")
    first = {r.sample_index: r.token_ids for r in run_until_idle(rig, 2)}
    rig.prompts.put(dataclasses.replace(group(0), prompt_id="again"), msg_id="again")
    second = {r.sample_index: r.token_ids for r in run_until_idle(rig, 2)}
    assert first == second and first[0] != first[1]


def test_new_weights_wait_for_the_running_generation_then_swap(rig):
    rig.prompts.put(group(0), msg_id="p0")
    rig.loop.run_once(idle_wait_s=0.0)
    assert rig.engine.has_unfinished()
    weights = {name: t + 0.01 for name, t in native_to_hf(rig.policy).items()}
    rig.policy_weights.publish(1, weights)
    rig.draft_weights.publish(4, dict(native_to_hf(rig.draft)))
    rig.prompts.put(group(1), msg_id="p1")
    rig.loop.run_once(idle_wait_s=0.0)
    assert rig.engine.policy_version == 0 and "p1" not in rig.loop._groups  # mid-generation: no swap, no new prompt
    records = run_until_idle(rig, 4)
    versions = {r.prompt_id: (r.policy_version, r.draft_version) for r in records}
    assert versions == {"p0": (0, 0), "p1": (1, 4)}
    assert rig.loop.stats.num_policy_swaps == 1 and rig.loop.stats.num_draft_swaps == 1 and rig.changes == [1]



def test_a_group_issued_under_newer_weights_waits_for_them(rig):
    # A restarted actor starts from the weights on disk (v0) and may lease a group issued at v2 before v2 reaches
    # it: generated at once, a synchronous run drops every sample as stale and trains another prompt instead.
    rig.prompts.put(dataclasses.replace(group(0), policy_version=2), msg_id="p0")
    for _ in range(5):
        rig.loop.run_once(idle_wait_s=0.0)
    assert not rig.engine.has_unfinished() and rig.loop.stats.num_groups_held_for_weights == 1
    assert rig.out.get_batch(10, timeout_s=0.0) == []
    rig.policy_weights.publish(2, {name: t + 0.01 for name, t in native_to_hf(rig.policy).items()})
    records = run_until_idle(rig, 2)
    assert [r.policy_version for r in records] == [2, 2] and rig.loop.stats.num_policy_swaps == 1


def test_a_held_group_goes_ahead_with_the_loaded_weights_when_its_version_never_comes(rig):
    rig.loop._hold_for_weights_s = 0.0  # gave up waiting at once: the controller judges staleness, as before
    rig.prompts.put(dataclasses.replace(group(0), policy_version=2), msg_id="p0")
    records = run_until_idle(rig, 2)
    assert [r.policy_version for r in records] == [0, 0] and rig.loop.stats.num_groups_held_for_weights == 1

def test_weights_that_do_not_fit_are_refused_once_and_counted(rig):
    rig.policy_weights.publish(1, {"model.embed_tokens.weight": torch.zeros(3, 3)})
    rig.prompts.put(group(0), msg_id="p0")
    records = run_until_idle(rig, 2)
    assert {r.policy_version for r in records} == {0}
    assert rig.loop.stats.num_rejected_weights == 1


def test_a_prompt_too_long_becomes_dropped_records_not_a_crash(rig):
    rig.prompts.put(group(0, length=MAX_SEQ_LEN), msg_id="p0")
    rig.prompts.put(group(1), msg_id="p1")
    records = {r.msg_id: r for r in run_until_idle(rig, 4)}
    assert records["p0/0"].drop_reason == DROP_LENGTH and records["p0/1"].drop_reason == DROP_LENGTH
    assert records["p1/0"].drop_reason == "" and rig.loop.stats.num_dropped_prompts == 1


def test_prompts_are_acked_only_once_their_records_are_confirmed(rig):
    confirmed = []

    class Unconfirmed:  # a trajectories sender whose queue has not confirmed anything yet
        def put(self, item, *, msg_id=None, timeout_s=60.0):
            confirmed.append(msg_id)

        def flush(self, timeout_s=60.0):
            return False

    rig.loop._trajectories = Unconfirmed()
    rig.prompts.put(group(0), msg_id="p0")
    for _ in range(200):
        rig.loop.run_once(idle_wait_s=0.0)
    assert sorted(confirmed) == ["p0/0", "p0/1"] and rig.loop.stats.num_acked == 0


def test_a_message_of_the_wrong_type_on_prompts_is_counted_and_acked(rig, make_record):
    rig.prompts.put(make_record(0, 0), msg_id="stray")
    rig.prompts.put(group(1), msg_id="p1")
    records = run_until_idle(rig, 2)
    assert sorted(r.msg_id for r in records) == ["p1/0", "p1/1"]
    assert rig.loop.stats.num_unexpected_messages == 1
