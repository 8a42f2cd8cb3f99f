"""Draft refresh wiring: a draft version per policy versions seen, monotone, samples consumed."""

import torch

from rollspec.actors.config import DRAFT_SAMPLES
from rollspec.actors.draft_refresh_loop import DraftRefreshLoop
from rollspec.transport import InProcBroadcast, InProcQueue, QueueConfig


def loop(every=1, draft_version=0, policy_version=0, samples=None):
    policy, drafts = InProcBroadcast(), InProcBroadcast()
    refresh = DraftRefreshLoop(draft_weights={"w": torch.ones(2)}, draft_version=draft_version,
                               policy_version=policy_version, policy=policy.sink(), publisher=drafts,
                               samples=samples, every_policy_versions=every)
    return refresh, policy, drafts


def test_initial_version_is_served_and_each_policy_version_gets_a_draft_version():
    refresh, policy, drafts = loop()
    assert drafts.current()[0] == 0
    for version in (1, 2, 3):
        policy.publish(version, {"p": torch.zeros(1)})
        refresh.run_once(idle_wait_s=0.0)
        assert drafts.current()[0] == version
    assert torch.equal(drafts.current()[1]["w"], torch.ones(2))  # passed through unchanged
    assert refresh.stats.num_published == 3


def test_every_n_policy_versions_and_a_skipped_version_counts():
    refresh, policy, drafts = loop(every=2)
    policy.publish(1, {})
    refresh.run_once(idle_wait_s=0.0)
    assert drafts.current()[0] == 0
    policy.publish(3, {})  # version 2 was never seen: 3 - 0 >= 2 still refreshes
    refresh.run_once(idle_wait_s=0.0)
    assert drafts.current()[0] == 1


def test_resumed_refresh_continues_from_the_checkpointed_versions():
    refresh, policy, drafts = loop(draft_version=5, policy_version=5)
    policy.publish(5, {})  # the restored learner republishes its version: not a new one
    refresh.run_once(idle_wait_s=0.0)
    assert drafts.current()[0] == 5
    policy.publish(6, {})
    refresh.run_once(idle_wait_s=0.0)
    assert drafts.current()[0] == 6


def test_samples_are_consumed_and_acked(make_record):
    queue = InProcQueue(QueueConfig(name=DRAFT_SAMPLES))
    refresh, _, _ = loop(samples=queue.receiver())
    for j in range(3):
        record = make_record(0, j, group_size=3)
        queue.sender().put(record, msg_id=record.msg_id)
    refresh.run_once(idle_wait_s=0.1)
    assert refresh.stats.num_samples == 3 and refresh.stats.num_sample_tokens == 9
    assert queue.stats().depth == 0
