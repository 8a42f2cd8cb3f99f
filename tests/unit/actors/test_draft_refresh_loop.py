"""Draft refresh wiring: a draft version per policy versions seen, monotone, samples consumed; the
refresher gets the newest policy and the trajectories; a failed refresh leaves the last good draft."""

import torch

from rollspec.actors.config import DRAFT_SAMPLES
from rollspec.actors.draft_refresh_loop import DraftRefreshLoop
from rollspec.models.distiller_state import TrainerState
from rollspec.models.draft_distiller import RefreshResult
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


class FakeRefresher:
    """Returns weights tagged with how many refreshes ran; can be told to fail or to want more data."""

    def __init__(self, fail=False, min_sequences=0):
        self.fail, self.min_sequences = fail, min_sequences
        self.policies, self.sequences, self.num_refreshes = [], [], 0

    def set_policy(self, weights_hf):
        self.policies.append(weights_hf)

    def add_sequences(self, sequences):
        self.sequences.extend(sequences)

    def refresh(self):
        if self.fail:
            raise RuntimeError("refresh broke")
        if len(self.sequences) < self.min_sequences:
            return None
        self.num_refreshes += 1
        return RefreshResult({"w": torch.full((2,), float(self.num_refreshes))}, 3, 1.0, 0.5, 0.1, False,
                             self.trainer_state())

    def buffered(self):
        return tuple(self.sequences)

    def trainer_state(self):
        return TrainerState({}, ("rng after refresh", self.num_refreshes))


def loop_with(refresher, samples=None, policy_version=0):
    policy, drafts = InProcBroadcast(), InProcBroadcast()
    refresh = DraftRefreshLoop(draft_weights={"w": torch.zeros(2)}, draft_version=policy_version,
                               policy_version=policy_version, policy=policy.sink(), publisher=drafts, samples=samples,
                               refresher=refresher)
    return refresh, policy, drafts


def test_refreshed_weights_are_published_and_trajectories_reach_the_refresher(make_record):
    queue = InProcQueue(QueueConfig(name=DRAFT_SAMPLES))
    refresher = FakeRefresher()
    refresh, policy, drafts = loop_with(refresher, queue.receiver())
    dropped = make_record(1, 0, drop_reason="length", token_ids=())
    for record in (make_record(0, 0), make_record(0, 1), dropped):
        queue.sender().put(record, msg_id=record.msg_id)
    policy.publish(1, {"p": torch.ones(1)})
    refresh.run_once(idle_wait_s=0.1)
    assert [(s.token_ids, s.prompt_len) for s in refresher.sequences] == [((1, 10, 3, 7, 8, 2), 3)] * 2
    assert torch.equal(refresher.policies[-1]["p"], torch.ones(1))  # the teacher is the newest policy
    version, weights = drafts.current()
    assert version == 1 and torch.equal(weights["w"], torch.ones(2))
    assert refresh.stats.history[-1]["policy_version"] == 1 and refresh.stats.history[-1]["kl_after"] == 0.5


def test_a_failed_refresh_publishes_nothing_and_the_loop_goes_on():
    refresher = FakeRefresher(fail=True)
    refresh, policy, drafts = loop_with(refresher)
    policy.publish(1, {})
    refresh.run_once(idle_wait_s=0.0)
    assert drafts.current()[0] == 0 and torch.equal(drafts.current()[1]["w"], torch.zeros(2))  # last good
    assert refresh.stats.num_refresh_failures == 1 and "refresh broke" in refresh.stats.last_error
    assert refresh.published[:2] == (0, 0) and torch.equal(refresh.published[2]["w"], torch.zeros(2))
    assert refresh.published[3].rng_state == ("rng after refresh", 0)  # the trainer state of the weights kept
    refresher.fail = False
    policy.publish(2, {})
    refresh.run_once(idle_wait_s=0.0)
    assert drafts.current()[0] == 1
    # What a checkpoint saves is what was last published, with the policy version it was refreshed at.
    assert refresh.published[:2] == (1, 2) and torch.equal(refresh.published[2]["w"], drafts.current()[1]["w"])
    assert refresh.published[3].rng_state == ("rng after refresh", 1)


def test_a_due_refresh_waits_for_enough_trajectories(make_record):
    queue = InProcQueue(QueueConfig(name=DRAFT_SAMPLES))
    refresher = FakeRefresher(min_sequences=2)
    refresh, policy, drafts = loop_with(refresher, queue.receiver())
    policy.publish(1, {})
    refresh.run_once(idle_wait_s=0.0)
    assert drafts.current()[0] == 0 and refresh.stats.num_refresh_waits == 1
    for j in range(2):
        queue.sender().put(make_record(0, j), msg_id=f"p0/{j}")
    refresh.run_once(idle_wait_s=0.1)  # no new policy version, but the data came: the due refresh runs
    assert drafts.current()[0] == 1


def test_a_resumed_refresher_gets_the_republished_policy_as_its_teacher():
    refresher = FakeRefresher()
    refresh, policy, drafts = loop_with(refresher, policy_version=4)
    policy.publish(4, {"p": torch.full((1,), 4.0)})
    refresh.run_once(idle_wait_s=0.0)
    assert refresher.policies and drafts.current()[0] == 4  # taken as the teacher, not a new version
