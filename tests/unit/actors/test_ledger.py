"""Invariant 2 on the controller's ledger: every issued group resolves exactly once, with reasons."""

import dataclasses
import random

import pytest

from rollspec.actors.batch_assembler import BatchAssembler, GroupResolution
from rollspec.actors.ledger import DROPPED, TRAINED, Ledger
from rollspec.scheduler import AdmissionConfig, AdmissionController


def resolution(prompt_id="p0", trained=True, reason="", reasons=("", "")) -> GroupResolution:
    return GroupResolution(prompt_id=prompt_id, prompt_index=0, trained=trained, reason=reason, policy_version=0,
                           draft_version=0, sample_reasons=reasons, rewards=(1.0, 0.0), num_tokens=(3, 3),
                           num_verify_steps=2, num_accepted=1, num_drafted=3, issued_at=0.0, generated_at=1.0,
                           scored_at=2.0, first_error="")


@pytest.mark.parametrize("seed", range(20))
def test_duplicates_and_redeliveries_never_train_a_group_twice_nor_lose_one(seed, make_record, deliver):
    rng = random.Random(seed)
    group_size, per_step, staleness = 2, 2, rng.choice([0, 1, 2])
    admission = AdmissionController(AdmissionConfig(max_staleness=staleness, prompts_per_step=per_step,
                                                    group_size=group_size))
    assembler, ledger = BatchAssembler(admission, vocab_size=64), Ledger()
    num_groups = 12
    events = []
    for index in range(num_groups):
        ledger.issue(f"p{index}", prompt_index=index, group_size=group_size, policy_version=0)
        version = rng.randrange(0, 3)
        for sample in range(group_size):
            record = make_record(index, sample, version=version,
                                 drop_reason=rng.choice(["", "", "", "reward_error"]))
            events += [deliver(record, attempt) for attempt in range(1, rng.choice([2, 2, 3, 4]))]  # duplicates
    rng.shuffle(events)
    step, acked = 0, 0
    for delivery in events:
        acked += assembler.add(delivery) is not None
        out = assembler.take(step)
        for group in out.resolutions:
            assert ledger.resolve(group, step)
        acked += len(out.to_ack_now) + len(out.to_ack_after_step)
        if out.samples is not None:
            step += 1
    for prompt_id in ledger.outstanding():  # what never made a full batch at the end of the run
        assembler.forget([prompt_id])
        assert ledger.drop(prompt_id, "run_end")
    assert ledger.problems() == []
    assert ledger.num_groups(TRAINED) + ledger.num_groups(DROPPED) == num_groups
    assert all(step_ - version <= staleness for _, step_, version in ledger.trained_versions())
    assert sum(ledger.sample_counts().values()) == num_groups * group_size


def test_a_second_resolution_is_a_violation_and_the_first_stands():
    ledger = Ledger()
    ledger.issue("p0", prompt_index=0, group_size=2, policy_version=0)
    assert ledger.resolve(resolution(), step=3)
    assert not ledger.resolve(resolution(), step=4)
    assert not ledger.drop("p0", "stale")
    assert ledger.entries["p0"].step == 3
    assert len(ledger.violations) == 2 and "already trained" in ledger.violations[0]


def test_unknown_groups_and_reasonless_drops_are_violations():
    ledger = Ledger()
    assert not ledger.resolve(resolution("p9"), step=0)
    ledger.issue("p1", prompt_index=1, group_size=2, policy_version=0)
    assert not ledger.drop("p1", "")
    assert not ledger.resolve(resolution("p1", trained=False, reason=""), step=0)
    assert not ledger.resolve(dataclasses.replace(resolution("p1"), sample_reasons=("",)), step=0)
    ledger.issue("p1", prompt_index=1, group_size=2, policy_version=0)
    assert len(ledger.violations) == 5
    assert ledger.outstanding() == ["p1"]
    assert any("never resolved" in problem for problem in ledger.problems())


def test_counts_and_json_round_trip():
    ledger = Ledger()
    for index in range(3):
        ledger.issue(f"p{index}", prompt_index=index, group_size=2, policy_version=0)
    ledger.resolve(resolution("p0", reasons=("", "reward_error")), step=0)
    ledger.drop("p1", "stale")
    ledger.reissue("p2", policy_version=1)
    assert ledger.num_outstanding_samples() == 2
    assert ledger.sample_counts() == {"trained": 1, "reward_error": 1, "stale": 2, "issued": 2}
    again = Ledger.from_json(ledger.to_json())
    assert again.to_json() == ledger.to_json()
    assert again.entries["p2"].num_issues == 2 and again.entries["p2"].issued_version == 1
