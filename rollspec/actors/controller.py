"""The controller: prompt cursor, admission, the step loop, drops, checkpoints and per-step metrics.

One loop serves both modes. Admission (scheduler/admission.py) decides how many prompt groups may
be dispatched from the rollout actors' policy version, the learner's next step and the work still
pending; with max_staleness = 0 that is exactly one step's worth, after the rollout actors hold
the version that step trains (generate -> score -> train -> publish); with s >= 1, rollouts keep
generating while the learner trains. The learner is asked for step t with a bounded wait; each
answer carries every group it resolved (trained in t, or dropped as stale), so dropped work is
replaced by the next admission decision while the step is still being filled.

Invariants held here: every issued group is in the ledger and resolved once (invariant 2);
versions in the controller state only go up, except by a recorded checkpoint restore (4).
"""

import time
from collections.abc import Callable

import ray

from rollspec.actors.checkpoints import CheckpointStore
from rollspec.actors.config import DRAFT_SAMPLES, PROMPTS, SCORED, TRAJECTORIES, ControllerSpec
from rollspec.actors.controller_state import ControllerState
from rollspec.actors.feeding_learner import FeedingLearnerGroup
from rollspec.actors.fleet import Fleet, FleetStatus
from rollspec.actors.process_heap import freeze_startup_heap
from rollspec.actors.prompt_source import PromptSource
from rollspec.actors.step_metrics import StepClock, step_metrics
from rollspec.scheduler import AdmissionController
from rollspec.transport import Broker, Sender

RUN_END = "run_end"
STATUS_EVERY_S = 0.05


class ControllerError(RuntimeError):
    """The run cannot continue (a learner or actor failure, a restored state that does not match)."""


class Controller:
    """Drives one run over started actors; `run()` returns the final state."""

    def __init__(self, spec: ControllerSpec, *, state: ControllerState, broker: Broker, prompts: Sender,
                 source: PromptSource, learner: FeedingLearnerGroup, fleet: Fleet, checkpoints: CheckpointStore | None,
                 on_step: Callable[[dict], None] = lambda metrics: None,
                 on_poll: Callable[[FleetStatus | None], None] = lambda status: None,
                 stop_requested: Callable[[], bool] = lambda: False):
        """`on_step(metrics)` runs after every learner step; `on_poll(status)` after every fleet poll
        (live metrics between steps); once `stop_requested()` is true the run stops early (see run)."""
        self.spec, self.state = spec, state
        self._broker, self._prompts, self._source = broker, prompts, source
        self._learner, self._fleet, self._checkpoints = learner, fleet, checkpoints
        self._on_step, self._on_poll, self._stop_requested = on_step, on_poll, stop_requested
        self.stopped_early = False
        self._admission = AdmissionController(spec.admission)
        self._forget: list[str] = []
        self._status: FleetStatus | None = None
        self._status_at = 0.0
        self._clock = StepClock()
        self.history: list[dict] = []

    # ------------------------------------------------------------------------------ the loop
    def run(self) -> ControllerState:
        """Reissue what the restored state left outstanding, then step until spec.steps are done.
        On a stop request: no more dispatches, the learner call in flight is let finish (it is bounded
        by train_wait_s), then a checkpoint of the step reached (if checkpoints are on and it has none)
        keeps the groups still outstanding for --resume to re-issue, instead of dropping them."""
        freeze_startup_heap()  # the driver hosts the broker: its I/O thread moves every item too
        self._refresh_status(force=True)
        self._reissue_outstanding()
        self._clock.start(self._status, version_needed=self.state.policy_version)
        pending_call: list | None = None
        while self.state.step < self.spec.steps:
            stopping = self._stop_requested()
            if stopping and pending_call is None:
                self.stopped_early = True
                break
            self._refresh_status()
            self._take_transport_drops()
            if not stopping:
                self._dispatch()
            if pending_call is None:
                pending_call = self._learner.train_from_feed_async(self.state.step, self._forget,
                                                                   self.spec.train_wait_s)
                self._forget = []
            done, _ = ray.wait(pending_call, num_returns=len(pending_call), timeout=self.spec.poll_s)
            if len(done) == len(pending_call):
                result = self._learner_result(pending_call)
                pending_call = None
                self._apply(result)
        if self.stopped_early:
            self._checkpoint_on_stop()
        else:
            self._finish()
        return self.state

    def _learner_result(self, refs: list) -> dict:
        try:
            results = ray.get(refs)
        except ray.exceptions.RayError as exc:
            raise ControllerError(f"learner step {self.state.step} failed: {exc}") from exc
        return results[0]

    def _apply(self, result: dict) -> None:
        """Record the groups the learner resolved; on a trained step advance step and version."""
        step = self.state.step
        for resolution in result["resolutions"]:
            self.state.ledger.resolve(resolution, step)
            if not resolution.trained:
                self.state.count(f"dropped_groups/{resolution.reason}")
        self._clock.learner_call(result)
        if not result["trained"]:
            return
        self.state.step = step + 1
        self.state.policy_version = int(result["version"])
        self._refresh_status(force=True)
        trained = [r for r in result["resolutions"] if r.trained]
        metrics = step_metrics(step, trained, result, self._clock.close_step(self._status), self._status,
                               self._queue_depths(), max_staleness=self.spec.admission.max_staleness)
        self.state.draft_version = metrics["draft_version"]
        self.history.append(metrics)
        self._on_step(metrics)
        if self._checkpoints is not None and (self.state.step % self.spec.checkpoint_every == 0
                                              or self.state.step == self.spec.steps):
            self.checkpoint()

    # ------------------------------------------------------------------------------ dispatch
    def _dispatch(self) -> None:
        """Issue as many prompt groups as admission allows (and no more than the run still needs)."""
        held = self._status.min_policy_version if self._status is not None else None
        if held is None:
            return
        self._clock.rollouts_hold(held)
        state = self.state
        allowed = self._admission.num_prompts_to_dispatch(
            policy_version=min(held, state.step), next_learner_step=state.step,
            num_in_flight=state.ledger.num_outstanding_samples(), num_buffered=0)
        needed = (self.spec.steps - state.step) * self.spec.prompts_per_step - len(state.ledger.outstanding())
        for _ in range(max(0, min(allowed, needed))):
            group = self._source.group(state.next_prompt_index, policy_version=held)
            state.ledger.issue(group.prompt_id, prompt_index=group.prompt_index, group_size=group.group_size,
                               policy_version=held)
            self._prompts.put(group, msg_id=group.prompt_id)
            state.next_prompt_index += 1

    def _reissue_outstanding(self) -> None:
        """After a restore: the groups the checkpoint left unresolved go out again (same prompt, same seeds)."""
        version = self.state.policy_version
        for prompt_id in self.state.ledger.outstanding():
            entry = self.state.ledger.entries[prompt_id]
            self.state.ledger.reissue(prompt_id, policy_version=version)
            self._prompts.put(self._source.group(entry.prompt_index, policy_version=version), msg_id=prompt_id)
            self.state.count("reissued_groups")

    def _take_transport_drops(self) -> None:
        """Items a queue gave up on (max_attempts, rejected) drop their whole group, with the queue's reason."""
        for queue in (PROMPTS, TRAJECTORIES, SCORED):
            for item in self._broker.drain_dropped(queue):
                prompt_id = item.msg_id.split("/", 1)[0]
                if prompt_id in self.state.ledger.entries and self.state.ledger.drop(prompt_id,
                                                                                    f"{queue}_{item.reason}"):
                    self._forget.append(prompt_id)
                    self.state.count(f"dropped_groups/{queue}_{item.reason}")
        self._broker.drain_dropped(DRAFT_SAMPLES)  # best-effort draft data: nothing to account for

    def _refresh_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._status_at >= STATUS_EVERY_S:
            self._status = self._fleet.poll()
            self._status_at = now
            self._on_poll(self._status)

    def _queue_depths(self) -> dict[str, int]:
        return {queue: self._broker.stats(queue).depth for queue in (PROMPTS, TRAJECTORIES, SCORED)}

    # ------------------------------------------------------------------------------ checkpoints, end
    def checkpoint(self) -> None:
        """Learner DeepSpeed state (every rank) + fingerprint, the latest published draft, then the
        controller state (with that draft's version), manifest and marker; a failed save leaves no
        partial directory (a full disk raises CheckpointWriteError)."""
        step = self.state.step
        with self._checkpoints.writing(step):
            self._learner.save_checkpoint(self._checkpoints.learner_dir(step), "state", client_state={"step": step})
            self.state.learner_fingerprint = self._learner.fingerprint()
            draft = self._fleet.save_draft(self._checkpoints.draft_dir(step))
            if draft is not None:  # published at or after the version the last step recorded: never lower
                self.state.draft_version = max(self.state.draft_version, int(draft["draft_version"]))
            self._checkpoints.complete(step, self.state.to_json())
        self.state.count("checkpoints")

    def _checkpoint_on_stop(self) -> None:
        step = self.state.step
        if self._checkpoints is not None and step > 0 and step not in self._checkpoints.complete_steps():
            self.checkpoint()

    def _finish(self) -> None:
        """Groups still outstanding when the last step is done will never train: dropped, reason run_end."""
        for prompt_id in self.state.ledger.outstanding():
            self.state.ledger.drop(prompt_id, RUN_END)
            self.state.count(f"dropped_groups/{RUN_END}")
