"""Reward functions: the built-in reward is right; every failure of a user function is a counted
reward error on the trajectory, never a crash."""

import textwrap

import pytest

from rollspec.actors.config import SCORED, TRAJECTORIES
from rollspec.actors.messages import DROP_REWARD_ERROR
from rollspec.actors.reward_fn import (
    RewardFunctionError,
    RewardOutcome,
    builtin_reward_function,
    checked_value,
    load_reward_function,
    texts_of,
)
from rollspec.actors.reward_loop import RewardLoop
from rollspec.actors.reward_sandbox import SandboxedRewardFunction
from rollspec.rl.mixture import TaskMixture
from rollspec.rl.template import encode_prompt, encode_response
from rollspec.transport import InProcQueue, QueueConfig

USER_MODULE = textwrap.dedent("""
    import math, os, time

    def good(prompt, response):
        print("user output goes to stderr, not into the protocol")
        return len(response) / 10

    def raises(prompt, response):
        raise RuntimeError("boom")

    def hangs(prompt, response):
        time.sleep(60)

    def nan(prompt, response):
        return math.nan

    def string(prompt, response):
        return "1.0"

    def dies(prompt, response):
        os._exit(3)

    def flaky(prompt, response):
        if "hang" in response:
            time.sleep(60)
        return 1.0

    not_callable = 3
""")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_rewards.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "user_rewards"


def test_builtin_reward_grades_reference_and_wrong_answers():
    score = builtin_reward_function()
    for example in TaskMixture({"addition": 1.0, "sorting": 1.0}, seed=3).take(6):
        prompt, response = texts_of(encode_prompt(example.prompt), encode_response(example.reference_response))
        assert (prompt, response) == (example.prompt, example.reference_response)
        assert score(prompt, response) == RewardOutcome(1.0, "")
        assert score(prompt, response + "7") == RewardOutcome(0.0, "")


def test_builtin_reward_on_a_prompt_of_no_task_is_an_error_not_a_crash():
    outcome = builtin_reward_function()("nosuchtask:1+1", "2")
    assert not outcome.ok and "UnknownTaskError" in outcome.error


@pytest.mark.parametrize("value, ok", [(1, True), (0.5, True), (float("nan"), False), (float("inf"), False),
                                       ("1.0", False), (None, False), ([1.0], False)])
def test_only_finite_numbers_are_rewards(value, ok):
    assert checked_value(value).ok is ok


@pytest.mark.parametrize("path, detail", [("no_colon", "not of the form"), ("nosuchmodule_xyz:f", "cannot import"),
                                          ("user_rewards:missing", "no attribute"),
                                          ("user_rewards:not_callable", "not a callable")])
def test_bad_reward_function_paths_fail_at_start_with_the_reason(user_module, path, detail):
    with pytest.raises(RewardFunctionError, match=detail):
        load_reward_function(path)
    with pytest.raises(RewardFunctionError, match=detail):
        SandboxedRewardFunction(path, timeout_s=1.0)


@pytest.mark.parametrize("name, error", [("raises", "raised RuntimeError: boom"), ("hangs", "timed out after 0.5s"),
                                         ("nan", "returned nan"), ("string", "returned a str"),
                                         ("dies", "worker process died")])
def test_every_failure_of_a_user_function_is_an_outcome_and_the_worker_recovers(user_module, name, error):
    score = SandboxedRewardFunction(f"{user_module}:{name}", timeout_s=0.5)
    try:
        first, second = score("p", "r"), score("p", "r")
        assert not first.ok and error in first.error
        assert second == first  # a killed worker is restarted for the next call
    finally:
        score.close()


def test_a_good_user_function_scores_through_the_sandbox(user_module):
    score = SandboxedRewardFunction(f"{user_module}:good", timeout_s=5.0)
    try:
        assert score("p", "abcde") == RewardOutcome(0.5, "")
    finally:
        score.close()


def test_reward_loop_records_errors_on_the_trajectory_and_keeps_going(user_module, make_record):
    trajectories, scored = InProcQueue(QueueConfig(name=TRAJECTORIES)), InProcQueue(QueueConfig(name=SCORED))
    score = SandboxedRewardFunction(f"{user_module}:flaky", timeout_s=0.5)
    loop = RewardLoop(trajectories=trajectories.receiver(), scored=scored.sender(), score=score)
    inbox = trajectories.sender()
    hang = [ord(c) - ord("a") + 15 for c in "hang"]  # vocab ids of the letters h, a, n, g
    sent = [make_record(0, 0, token_ids=(15, 2)), make_record(0, 1, token_ids=(*hang, 2)),
            make_record(1, 0, drop_reason="length", token_ids=()), make_record(1, 1, token_ids=(99,))]
    for record in sent:
        inbox.put(record, msg_id=record.msg_id)
    try:
        for _ in range(5):
            loop.run_once(idle_wait_s=0.01)
    finally:
        score.close()
    out = {d.msg_id: d.item for d in scored.receiver().get_batch(10, timeout_s=1.0)}
    assert set(out) == {r.msg_id for r in sent}
    assert out["p0/0"].reward == 1.0 and out["p0/0"].drop_reason == ""
    assert out["p0/1"].drop_reason == DROP_REWARD_ERROR and "timed out" in out["p0/1"].error
    assert out["p1/0"].drop_reason == "length"  # dropped upstream: passed on untouched
    assert out["p1/1"].drop_reason == DROP_REWARD_ERROR and "decode" in out["p1/1"].error
    assert loop.stats.num_reward_errors == 2 and loop.stats.num_passed_through == 1
    assert loop.stats.num_acked == 4 and trajectories.stats().depth == 0


def test_a_message_of_the_wrong_type_is_counted_and_acked_not_scored(make_record):
    from rollspec.actors.messages import PromptGroup

    trajectories, scored = InProcQueue(QueueConfig(name=TRAJECTORIES)), InProcQueue(QueueConfig(name=SCORED))
    loop = RewardLoop(trajectories=trajectories.receiver(), scored=scored.sender(), score=builtin_reward_function())
    stray = PromptGroup(prompt_id="p0", prompt_index=0, token_ids=[1, 3], group_size=2, policy_version=0, seed=0,
                        issued_at=0.0)
    trajectories.sender().put(stray, msg_id="stray")
    loop.run_once(idle_wait_s=0.05)
    assert loop.stats.num_unexpected_messages == 1 and loop.stats.num_scored == 0
    assert trajectories.stats().depth == 0 and scored.stats().depth == 0
