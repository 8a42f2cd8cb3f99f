"""Asynchronous GRPO as a discrete-event simulation: rollout, reward and learner overlap within a staleness bound."""

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rollspec.scheduler import AdmissionConfig, AdmissionController
from rollspec.sim.lengths import LengthDistribution, LengthSequence
from rollspec.sim.rollout import ReplicaSim, ReplicaStats
from rollspec.sim.training import TrainingConfig


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """When each learner step (and its weight sync) finished, and how busy each resource was."""

    step_end_s: NDArray[np.float64]
    warmup_steps: int
    generator_busy_s: float
    learner_busy_s: float
    num_dropped_stale: int
    staleness_counts: dict[int, int]
    stats: ReplicaStats

    @property
    def mean_step_s(self) -> float:
        """Steady-state seconds per learner step: mean interval between step ends after warm-up."""
        return float(np.diff(self.step_end_s[self.warmup_steps - 1:]).mean())

    @property
    def generator_utilization(self) -> float:
        """Fraction of wall time the rollout replica spent generating; the rest is the bubble."""
        return self.generator_busy_s / float(self.step_end_s[-1])

    @property
    def learner_utilization(self) -> float:
        return self.learner_busy_s / float(self.step_end_s[-1])


class _Pipeline:
    """State of one run; `run` is the event loop. Times in seconds from the start."""

    def __init__(self, replica: ReplicaSim, lengths: LengthDistribution | LengthSequence, training: TrainingConfig,
                 prompt_tokens: int, rng: np.random.Generator) -> None:
        self.replica, self.lengths, self.training, self.rng = replica, lengths, training, rng
        self.prompt_tokens = prompt_tokens
        self.admission = AdmissionController(AdmissionConfig(
            max_staleness=training.max_staleness, prompts_per_step=training.prompts_per_step,
            group_size=training.group_size))
        self.now = 0.0
        self.policy_version = 0  # the version the rollout replica holds
        self.next_step = 0  # learner batches taken so far
        self.num_in_flight = 0
        self.scoring: list[tuple[float, int, int]] = []  # (score ready at, version, length)
        self.buffer: list[tuple[int, int]] = []  # scored, not yet trained: (version, length)
        self.compute_end = math.inf  # learner stops computing and starts publishing weights
        self.step_end = math.inf  # weights published and loaded: the step is over
        self.swap_to: int | None = None  # drain_to_swap: a published version waiting for the replica to go idle
        self.swap_end = 0.0  # drain_to_swap: the replica loads weights until then
        self.learner_start = 0.0
        self.step_ends: list[float] = []
        self.generator_busy_s = 0.0
        self.learner_busy_s = 0.0

    @property
    def learner_busy(self) -> bool:
        return self.step_end < math.inf

    def run(self, num_steps: int) -> None:
        while True:
            self._finish_learner_step()
            if len(self.step_ends) == num_steps:
                return
            self._collect_scores()
            self._start_learner_step()
            self._dispatch()
            self._advance_time()

    def _finish_learner_step(self) -> None:
        if self.now >= self.step_end:
            self.learner_busy_s += self.step_end - self.learner_start
            self.step_ends.append(self.step_end)
            if self.training.drain_to_swap:
                self.swap_to = self.next_step
            else:
                self.policy_version = self.next_step  # step t publishes version t + 1 = batches taken
                self.replica.depth.notify_weights_changed()
            self.compute_end = self.step_end = math.inf
        if self.swap_to is not None and self.replica.is_idle:
            self.swap_end = self.now + self.training.weight_sync_s
            self.policy_version, self.swap_to = self.swap_to, None
            self.replica.depth.notify_weights_changed()

    def _collect_scores(self) -> None:
        ready = [item for item in self.scoring if item[0] <= self.now]
        if ready:
            self.scoring = [item for item in self.scoring if item[0] > self.now]
            self.buffer.extend((version, length) for _, version, length in ready)

    def _start_learner_step(self) -> None:
        if self.learner_busy:
            return
        versions = [version for version, _ in self.buffer]
        take, stale = self.admission.select_batch(versions, self.next_step)
        for i in stale:  # expired for good: the learner only moves on, so they can never train
            self.admission.admit(versions[i], self.next_step)
        if len(take) < self.training.trajectories_per_step:
            take = []
        tokens = 0
        for i in take:
            assert self.admission.admit(versions[i], self.next_step)
            tokens += self.buffer[i][1] + self.prompt_tokens
        gone = set(take) | set(stale)
        self.buffer = [item for i, item in enumerate(self.buffer) if i not in gone]
        if not take:
            return
        self.learner_start = self.now
        self.compute_end = self.now + self.training.learner_s(tokens)
        # With drain_to_swap the learner is done once it has published; the rollout swaps on its own time.
        self.step_end = self.compute_end + (0.0 if self.training.drain_to_swap else self.training.weight_sync_s)
        self.next_step += 1

    def _dispatch(self) -> None:
        if self.swap_to is not None:  # the rollout takes no prompts while it drains for new weights
            return
        num_prompts = self.admission.num_prompts_to_dispatch(
            policy_version=self.policy_version, next_learner_step=self.next_step,
            num_in_flight=self.num_in_flight, num_buffered=len(self.scoring) + len(self.buffer))
        if self.training.lease_to_free_rows:
            free_rows = self.replica.max_num_seqs - self.replica.num_live - self.replica.num_waiting
            num_prompts = min(num_prompts, -(-max(0, free_rows) // self.training.group_size))
        if num_prompts:
            count = num_prompts * self.training.group_size
            self.replica.add(self.lengths.sample(self.rng, count), self.policy_version)
            self.num_in_flight += count

    def _can_generate(self) -> bool:
        if self.replica.is_idle:
            return False
        if self.training.colocated and self.learner_busy:
            return False
        if self.now < self.swap_end:
            return False
        # Weights are swapped between steps, never mid-verify: the replica pauses while they load.
        return not self.compute_end <= self.now < self.step_end

    def _advance_time(self) -> None:
        next_score = min((item[0] for item in self.scoring), default=math.inf)
        pause = self.compute_end if self.compute_end > self.now else self.step_end
        next_event = min(next_score, pause, self.step_end, self.swap_end if self.swap_end > self.now else math.inf)
        if self._can_generate():
            advance = self.replica.advance(max_s=next_event - self.now)
            self.generator_busy_s += advance.elapsed_s
            done_at = self.now + advance.elapsed_s
            self.scoring.extend((done_at + self.training.reward_s, int(v), int(n))
                                for v, n in zip(advance.finished_versions, advance.finished_lengths))
            self.num_in_flight -= advance.finished_versions.size
            self.now = done_at
        else:
            assert next_event < math.inf, "pipeline stalled: nothing generating, scoring or training"
            self.now = next_event


def simulate_pipeline(*, replica: ReplicaSim, lengths: LengthDistribution | LengthSequence,
                      training: TrainingConfig, prompt_tokens: int, num_steps: int,
                      rng: np.random.Generator) -> PipelineResult:
    """Run `num_steps` learner steps of GRPO with rollout and training overlapped up to `training.max_staleness`.

    The scheduler's AdmissionController decides when prompts are dispatched (so at most
    max_staleness + 1 steps of work are ever outstanding) and which scored trajectories a
    learner step takes (oldest version first; expired ones are dropped and regenerated).
    The replica generates continuously while admission lets it; each finished trajectory
    is scored reward_s later; the learner starts as soon as a full fresh batch is scored,
    trains, then publishes weights, during which the replica pauses. With max_staleness = 0
    this is exactly the synchronous step (see training.simulate_sync).

    The first max_staleness + 1 steps fill the pipeline and are left out of `mean_step_s`.
    """
    assert num_steps >= 2, num_steps
    pipeline = _Pipeline(replica, lengths, training, prompt_tokens, rng)
    pipeline.run(num_steps)
    stats = pipeline.admission.stats
    return PipelineResult(
        step_end_s=np.array(pipeline.step_ends), warmup_steps=min(training.max_staleness + 1, num_steps - 1),
        generator_busy_s=pipeline.generator_busy_s, learner_busy_s=pipeline.learner_busy_s,
        num_dropped_stale=stats.num_dropped_stale, staleness_counts=stats.staleness_counts, stats=replica.stats)
