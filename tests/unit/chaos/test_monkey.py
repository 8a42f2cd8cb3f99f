"""The chaos monkey's scheduling edge cases, without Ray (no fault here reaches an actor): a fault due
after the run's last step is skipped, not injected into the run's shutdown; a fault whose segment ends
before it fires waits for the next segment."""

import time
import types

from rollspec.chaos.monkey import ChaosMonkey
from rollspec.chaos.schedule import Fault

BROKER = types.SimpleNamespace(fault_counts=lambda: {"dropped": 1})


def test_a_fault_due_after_the_last_step_is_skipped():
    monkey = ChaosMonkey([Fault(kind="kill_learner", at_step=1, delay_s=0.5)])
    monkey.progress(2)  # the run has 2 steps
    monkey.attach(None, None, BROKER)
    monkey.on_step({"step": 0})
    monkey.on_step({"step": 1})  # the last step completed while the fault waited for its delay
    deadline = time.time() + 30.0
    while not monkey.skipped and time.time() < deadline:  # the run's shutdown, during which the delay ends
        time.sleep(0.05)
    monkey.detach()
    assert monkey.skipped == [Fault(kind="kill_learner", at_step=1, delay_s=0.5)]
    assert monkey.events == [] and monkey.pending == []
    assert monkey.message_faults == {"dropped": 1}


def test_a_fault_whose_segment_ended_waits_for_the_next_segment():
    fault = Fault(kind="kill_reward", at_step=0, delay_s=0.5)
    monkey = ChaosMonkey([fault])
    monkey.progress(4)
    monkey.attach(None, None, BROKER)
    monkey.detach()  # the segment ends before the fault's delay has passed
    assert monkey.pending == [fault] and monkey.events == [] and monkey.skipped == []
