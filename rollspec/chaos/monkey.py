"""ChaosMonkey: injects the actor faults of a schedule into a running `train()` and times recovery.

It is handed the run's actors through `train(on_started=...)` and hears of every finished step
through its progress object, so faults are placed by step ("kill reward-0 0.3 s into step 2").
A fault due in step s fires `delay_s` after step s - 1 completed or, if step s completes first,
as it completes: the controller's report of step s waits for it (`on_step`), so a fault always
lands where its schedule puts it however fast the steps run (the tiny run's steps take ~0.15 s).
Kills go through Ray (`ray.kill`): a rollout or reward actor is restarted by Ray (max_restarts); the
draft-refresh actor and learner ranks are not (a dead learner ends the run, which then resumes
from its checkpoint); `crash_controller` raises in the driver's step loop, which ends the run the
same way.
"""

import dataclasses
import threading
import time

import ray

from rollspec.chaos.schedule import Fault
from rollspec.launch.progress import StepProgress

GATE_S = 120.0
RESTART_WAIT_S = 60.0  # how long the last step waits for killed actors to answer again
"""Longest a step's report waits for the faults due by then (a deadlock guard; they take milliseconds)."""


class ControllerCrash(RuntimeError):
    """Raised into the controller's step loop by a `crash_controller` fault."""


@dataclasses.dataclass(slots=True)
class FaultEvent:
    """One injected fault: when, and when the run made progress again (`recovered_at`)."""

    kind: str
    target: str
    step: int
    at: float
    recovered_at: float | None = None
    actor_back_s: float | None = None
    """Kills of restartable actors: until the restarted actor answered again."""

    @property
    def recover_s(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.at

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "recover_s": self.recover_s}


class MonkeyProgress(StepProgress):
    """The run's progress display, telling the monkey about each finished step."""

    def __init__(self, monkey: "ChaosMonkey", total_steps: int):
        super().__init__(total_steps, enabled=False)
        self._monkey = monkey

    def update(self, metrics: dict) -> None:
        super().update(metrics)
        self._monkey.on_step(metrics)


class ChaosMonkey:
    """Executes `faults` (each once) during one or more run segments; `events` records what happened."""

    def __init__(self, faults: list[Fault]):
        self.pending = sorted(faults, key=lambda f: (f.at_step, f.delay_s))
        self.events: list[FaultEvent] = []
        self.message_faults: dict[str, int] = {}
        """The broker's outbound messages touched by each fault kind, over every segment."""
        self._segment_faults: dict[str, int] = {}
        self._steps_done = -1
        self._cond = threading.Condition()
        self._crash = False
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._handles: tuple | None = None
        self._total_steps: int | None = None
        self._inflight = 0
        self._segment = 0
        """Faults taken from `pending` and not yet injected (waiting for their delay)."""
        self._waiters: list[threading.Thread] = []
        self.skipped: list[Fault] = []
        """Faults never injected: the run finished before they were due (see finished())."""

    def progress(self, total_steps: int) -> MonkeyProgress:
        self._total_steps = total_steps
        return MonkeyProgress(self, total_steps)

    # ------------------------------------------------------------------------------ run hooks
    def attach(self, fleet, learner, broker) -> None:
        """train(on_started=...): the run's actors are up; start injecting."""
        with self._cond:
            self._handles = (fleet, learner, broker)
            self._stopped = False
            self._segment += 1
        self._thread = threading.Thread(target=self._inject, name="chaos-monkey", daemon=True)
        self._thread.start()

    def on_step(self, metrics: dict) -> None:
        """A step finished: close open recoveries, inject every fault due by this step (waiting for the
        injector at most GATE_S), and crash if a crash is due."""
        now = time.time()
        step = metrics["step"]
        with self._cond:
            self._steps_done = step
            for event in self.events:
                if event.recovered_at is None and now > event.at:
                    event.recovered_at = now
            self._snapshot_message_faults()
            self._cond.notify_all()
            deadline = now + GATE_S
            while not self._stopped and (self._inflight or (self.pending and self.pending[0].at_step <= step)) \
                    and time.time() < deadline:
                self._cond.wait(0.05)
            crash, self._crash = self._crash, False
        if crash:
            raise ControllerCrash(f"chaos: controller crashed after step {metrics['step']}")
        if self._total_steps is not None and step >= self._total_steps - 1:
            self._await_restarts(RESTART_WAIT_S)

    def _await_restarts(self, timeout_s: float) -> None:
        """At the run's last step, while its actors still exist, give each actor killed in it up to
        timeout_s to come back and answer: Ray restarts one in ~3 s and a short run can end sooner,
        and once it has ended nothing can answer (the scenario then reports the actor never came back)."""
        deadline = time.time() + timeout_s
        for waiter in list(self._waiters):
            waiter.join(timeout=max(0.0, deadline - time.time()))

    def detach(self) -> None:
        """The run segment ended (normally or not): stop the injector thread."""
        with self._cond:
            self._snapshot_message_faults()
            self._close_segment_faults()
            self._stopped = True
            self._handles = None
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30.0)
            self._thread = None

    def finished(self, at: float) -> None:
        """The run completed (its last segment returned): a fault injected during the last step has no
        step after it, so the run's completion is its recovery; faults never injected are `skipped`."""
        for waiter in self._waiters:
            waiter.join(timeout=300.0)
        self._waiters = []
        for event in self.events:
            if event.recovered_at is None and self._total_steps is not None \
                    and event.step >= self._total_steps - 1:
                event.recovered_at = at
        self.skipped.extend(self.pending)
        self.pending = []

    # ------------------------------------------------------------------------------ injection
    def _inject(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and not (self.pending and self._steps_done + 1 >= self.pending[0].at_step):
                    self._cond.wait(0.1)
                if self._stopped:
                    return
                fault = self.pending.pop(0)
                self._inflight += 1
                handles = self._handles
                step = min(self._steps_done + 1, fault.at_step)  # at_step once that step has completed
                deadline = time.time() + fault.delay_s
                while not self._stopped and self._steps_done < fault.at_step and time.time() < deadline:
                    self._cond.wait(max(0.0, min(0.05, deadline - time.time())))
                if self._stopped:  # the segment ended meanwhile: the fault is due in the next one
                    self.pending.insert(0, fault)
                    self._inflight -= 1
                    self._cond.notify_all()
                    return
            try:
                self._apply(fault, handles, step)
            finally:
                with self._cond:
                    self._inflight -= 1
                    self._cond.notify_all()

    def _apply(self, fault: Fault, handles: tuple, step: int) -> None:
        fleet, learner, _ = handles
        event = FaultEvent(fault.kind, fault.target_name, step, time.time())
        if fault.kind == "crash_controller":
            with self._cond:
                self._crash = True
            self.events.append(event)
            return
        if fault.kind == "kill_refresh":
            actor = fleet.refresh
        else:  # the target index wraps around the actors the run has (a soak draw may name reward-1 of one)
            actors = {"kill_rollout": fleet.rollouts, "kill_reward": fleet.rewards,
                      "kill_learner": learner.actors if learner is not None else []}[fault.kind]
            index = fault.target % len(actors)
            actor = actors[index]
            event.target = event.target.rsplit("-", 1)[0] + f"-{index}"
        if actor is None:
            return  # nothing to kill (e.g. no draft-refresh actor in this run)
        restartable = fault.kind in ("kill_rollout", "kill_reward")
        ray.kill(actor, no_restart=not restartable)
        self.events.append(event)
        if restartable:  # on its own thread: the next fault (and the step gate) need not wait for the restart
            waiter = threading.Thread(target=self._wait_back, args=(actor, event), name="chaos-wait-back", daemon=True)
            waiter.start()
            self._waiters.append(waiter)

    def _wait_back(self, actor, event: FaultEvent, timeout_s: float = 300.0) -> None:
        """Until the restarted actor answers (short polls: a call sent to the dying process may hang,
        and the run can end a second after the restart); gives up when the segment ends."""
        deadline, segment = time.time() + timeout_s, self._segment
        while time.time() < deadline and not self._stopped and self._segment == segment:
            try:
                ray.get(actor.status.remote(), timeout=1.0)
                event.actor_back_s = time.time() - event.at
                return
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                time.sleep(0.1)

    def _snapshot_message_faults(self) -> None:
        # The broker's counters restart with each run segment: keep the last snapshot of this one.
        if self._handles is not None:
            self._segment_faults = self._handles[2].fault_counts()

    def _close_segment_faults(self) -> None:
        for name, count in self._segment_faults.items():
            self.message_faults[name] = self.message_faults.get(name, 0) + count
        self._segment_faults = {}
