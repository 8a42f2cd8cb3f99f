"""Bounded-staleness admission (AReaL-style): dispatch only work that can still train within max_staleness."""

from collections.abc import Sequence
from dataclasses import dataclass, field

from rollspec.scheduler.config import AdmissionConfig

DROP_REASON_STALE = "stale"


@dataclass(slots=True, kw_only=True)
class AdmissionStats:
    """Consumption checks so far; `staleness_counts[d]` counts admitted trajectories that were d versions old."""

    num_admitted: int = 0
    num_dropped_stale: int = 0
    staleness_counts: dict[int, int] = field(default_factory=dict)


class AdmissionController:
    """Decides how many prompts may be dispatched, and whether a trajectory may still train.

    Versions and steps: the initial policy is version 0; learner step t (0-based) trains on
    one batch of `trajectories_per_step` trajectories and publishes version t + 1. A
    trajectory generated with version v may train in step t iff t - v <= max_staleness.

    Dispatch bound: learner batches are filled in the order trajectories arrive. With
    `pending` trajectories already dispatched but not yet taken by the learner, the next new
    trajectory lands at most in step next_learner_step + floor(pending / N), N trajectories
    per step; it is generated with at least the current `policy_version`. So a new prompt is
    admitted only while pending + group_size <= (policy_version + max_staleness + 1 -
    next_learner_step) * N. With max_staleness = 0 this dispatches exactly one step's worth
    and then nothing until the learner has published the version that step will train.

    A trajectory that finishes late, after later-dispatched ones filled the step it was
    counted for, can still exceed the bound; `admit` catches it at consumption, and
    `select_batch` (oldest version first) keeps such cases rare.
    """

    def __init__(self, config: AdmissionConfig) -> None:
        self._config = config
        self._stats = AdmissionStats()

    @property
    def config(self) -> AdmissionConfig:
        return self._config

    @property
    def trajectories_per_step(self) -> int:
        return self._config.prompts_per_step * self._config.group_size

    @property
    def stats(self) -> AdmissionStats:
        """A snapshot of the consumption counters."""
        return AdmissionStats(
            num_admitted=self._stats.num_admitted,
            num_dropped_stale=self._stats.num_dropped_stale,
            staleness_counts=dict(self._stats.staleness_counts),
        )

    def num_prompts_to_dispatch(self, *, policy_version: int, next_learner_step: int, num_in_flight: int,
                                num_buffered: int) -> int:
        """How many new prompts (each becoming group_size trajectories) may be dispatched now.

        - policy_version: the oldest policy version a newly dispatched prompt may be generated
          with, i.e. the version the rollout actors hold (the minimum over them).
        - next_learner_step: the learner step that will take the next batch (= batches taken so far).
        - num_in_flight: trajectories dispatched and neither finished nor dropped.
        - num_buffered: finished trajectories (scored or being scored) not yet taken by the learner.
        """
        assert 0 <= policy_version <= next_learner_step, (policy_version, next_learner_step)
        assert num_in_flight >= 0 and num_buffered >= 0, (num_in_flight, num_buffered)
        steps_open = policy_version + self._config.max_staleness + 1 - next_learner_step
        free = steps_open * self.trajectories_per_step - num_in_flight - num_buffered
        return max(0, free // self._config.group_size)

    def last_step_for(self, policy_version: int) -> int:
        """The last learner step that may train on a trajectory of this policy version."""
        return policy_version + self._config.max_staleness

    def is_fresh_enough(self, policy_version: int, learner_step: int) -> bool:
        """Whether a trajectory generated with `policy_version` (the oldest it used) may train in `learner_step`."""
        return learner_step - policy_version <= self._config.max_staleness

    def admit(self, policy_version: int, learner_step: int) -> bool:
        """`is_fresh_enough`, counted: False means drop the trajectory with reason DROP_REASON_STALE."""
        if not self.is_fresh_enough(policy_version, learner_step):
            self._stats.num_dropped_stale += 1
            return False
        staleness = learner_step - policy_version
        self._stats.num_admitted += 1
        self._stats.staleness_counts[staleness] = self._stats.staleness_counts.get(staleness, 0) + 1
        return True

    def select_batch(self, policy_versions: Sequence[int], learner_step: int) -> tuple[list[int], list[int]]:
        """Which buffered trajectories (given by the policy version each was generated with) `learner_step` takes.

        Returns (indices to train on, indices that are stale and must be dropped). The batch
        holds up to trajectories_per_step fresh ones, oldest version first (ties in buffer
        order): those expire soonest, so arrival order cannot let a newer trajectory push an
        older one past its last step. Pure: the caller trains only on a full batch, and passes
        what it consumes or drops through `admit` to count it.
        """
        fresh = [i for i, v in enumerate(policy_versions) if self.is_fresh_enough(v, learner_step)]
        stale = [i for i, v in enumerate(policy_versions) if not self.is_fresh_enough(v, learner_step)]
        fresh.sort(key=lambda i: policy_versions[i])
        return fresh[: self.trajectories_per_step], stale
