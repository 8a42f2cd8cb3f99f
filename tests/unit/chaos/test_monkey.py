"""The chaos monkey's scheduling, without Ray (kills go to a stand-in): a fault due in step s lands by
the time step s is reported however fast steps run; a fault whose segment ends first waits for the
next segment; a fault in the last step is recovered by the run's completion; one never reached is
reported as skipped."""

import types

import pytest

from rollspec.chaos import monkey as monkey_module
from rollspec.chaos.monkey import ChaosMonkey, ControllerCrash
from rollspec.chaos.schedule import Fault

BROKER = types.SimpleNamespace(fault_counts=lambda: {"dropped": 1})


@pytest.fixture
def killed(monkeypatch) -> list:
    out = []
    monkeypatch.setattr(monkey_module, "ray", types.SimpleNamespace(kill=lambda actor, no_restart: out.append(actor)))
    monkeypatch.setattr(ChaosMonkey, "_wait_back", staticmethod(lambda actor, event: None))
    return out


def test_a_fault_lands_before_its_step_is_reported_even_if_the_step_beats_its_delay():
    monkey = ChaosMonkey([Fault(kind="crash_controller", at_step=1, delay_s=600.0)])
    monkey.progress(4)
    monkey.attach(None, None, BROKER)
    monkey.on_step({"step": 0})
    with pytest.raises(ControllerCrash):
        monkey.on_step({"step": 1})  # step 1 completed long before the fault's delay: it fires now
    monkey.detach()
    assert [(e.kind, e.step) for e in monkey.events] == [("crash_controller", 1)]
    assert monkey.pending == [] and monkey.message_faults == {"dropped": 1}


def test_a_fault_whose_segment_ended_waits_for_the_next_segment():
    fault = Fault(kind="kill_reward", at_step=0, delay_s=600.0)
    monkey = ChaosMonkey([fault])
    monkey.progress(4)
    monkey.attach(None, None, BROKER)
    monkey.detach()  # the segment ends before the fault's delay has passed
    assert monkey.pending == [fault] and monkey.events == []


def test_a_kill_in_the_last_step_is_recovered_by_the_run_finishing_and_unreached_faults_are_skipped(killed):
    fleet = types.SimpleNamespace(rewards=["reward-actor"], rollouts=["rollout-actor"], refresh=None)
    late = Fault(kind="kill_rollout", at_step=5, delay_s=0.0)  # beyond this run: never reached
    monkey = ChaosMonkey([Fault(kind="kill_reward", at_step=1, delay_s=600.0, target=1), late])
    monkey.progress(2)
    monkey.attach(fleet, None, BROKER)
    monkey.on_step({"step": 0})
    monkey.on_step({"step": 1})  # the last step: the reward kill fires before the report returns
    monkey.detach()
    assert killed == ["reward-actor"] and monkey.events[0].target == "reward-0"  # target 1 of 1 wraps to 0
    assert monkey.events[0].recovered_at is None  # no step came after it ...
    monkey.finished(at=monkey.events[0].at + 5.0)
    assert monkey.events[0].recover_s == 5.0  # ... the run's completion is its recovery
    assert monkey.skipped == [late]
