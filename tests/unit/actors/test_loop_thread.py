"""LoopThread: steps until stopped; a step that raises ends the loop with its traceback kept."""

import threading

from rollspec.actors.loop_thread import LoopThread


def test_steps_until_stopped():
    calls, started = [], threading.Event()

    def step():
        calls.append(1)
        started.set()

    runner = LoopThread(step, "test-loop")
    assert started.wait(5)
    runner.stop(timeout_s=5)
    count = len(calls)
    assert count >= 1 and runner.error == ""
    assert len(calls) == count  # nothing runs after stop() returned


def test_a_failing_step_ends_the_loop_and_keeps_the_traceback():
    calls = []

    def step():
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("reward model exploded")

    runner = LoopThread(step, "test-loop")
    runner._thread.join(5)
    assert len(calls) == 3
    assert "ValueError: reward model exploded" in runner.error and "Traceback" in runner.error
