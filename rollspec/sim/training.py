"""The non-rollout parts of a GRPO step, and the synchronous step as plain arithmetic over simulated drains."""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rollspec.sim.lengths import LengthDistribution
from rollspec.sim.rollout import ReplicaSim, ReplicaStats, simulate_drain


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingConfig:
    """One replica's share of a GRPO step, and the learner, reward and weight-sync costs around it.

    Replicas are symmetric, so one replica generating `prompts_per_step * group_size`
    trajectories per step stands for all of them; the learner time is for the whole batch.
    - `reward_s`: from a trajectory finishing to its score being available (verifier latency).
    - learner seconds = `learner_fixed_s + learner_s_per_token * tokens`, tokens = prompt +
      response tokens of the replica's share (the per-token rate already scales by the number
      of replicas: the learner trains on every replica's share at once).
    - `weight_sync_s`: publishing and loading new weights; the learner is busy and the
      rollout replica paused for this long after each learner step.
    - `max_staleness`: a trajectory of policy version v may train in step t iff t - v <= it.
    - `colocated`: rollout and learner share GPUs, so the replica cannot generate while the
      learner trains (no overlap, whatever the staleness bound).
    - `lease_to_free_rows`: prompts are dispatched only into free engine rows (rows not
      decoding and not already queued), on top of the staleness bound. Without it the whole
      staleness allowance is queued at once, and the time a prompt waits in the engine queue
      counts against its staleness: long responses then expire and are regenerated.
    - `drain_to_swap`: the rollout takes up new weights only once it is idle (rollspec's actor:
      when a new version arrives it stops taking prompts, finishes what it is generating, then
      swaps for `weight_sync_s`), so no KV entry outlives its weights; the learner step itself ends
      when it has published. Without it the replica pauses mid-generation while weights load.
    """

    prompts_per_step: int
    group_size: int
    reward_s: float
    learner_fixed_s: float
    learner_s_per_token: float
    weight_sync_s: float
    max_staleness: int = 0
    colocated: bool = False
    lease_to_free_rows: bool = True
    drain_to_swap: bool = False

    def __post_init__(self) -> None:
        assert self.prompts_per_step >= 1 and self.group_size >= 1, self
        assert min(self.reward_s, self.learner_fixed_s, self.learner_s_per_token, self.weight_sync_s) >= 0, self
        assert self.max_staleness >= 0, self.max_staleness

    @property
    def trajectories_per_step(self) -> int:
        return self.prompts_per_step * self.group_size

    def learner_s(self, num_tokens: float) -> float:
        return self.learner_fixed_s + self.learner_s_per_token * num_tokens


@dataclass(frozen=True, slots=True)
class SyncResult:
    """Synchronous steps: per-step rollout (drain) seconds and total step seconds."""

    rollout_s: NDArray[np.float64]
    step_s: NDArray[np.float64]
    stats: ReplicaStats

    @property
    def mean_step_s(self) -> float:
        return float(self.step_s.mean())

    @property
    def rollout_fraction(self) -> float:
        """Share of the step spent generating (the paper's 65-72% for reasoning RL)."""
        return float(self.rollout_s.sum() / self.step_s.sum())


def simulate_sync(*, replica: ReplicaSim, lengths: LengthDistribution, training: TrainingConfig, prompt_tokens: int,
                  num_steps: int, rng: np.random.Generator) -> SyncResult:
    """Synchronous GRPO: each step drains one batch, then reward tail, learner, weight sync, strictly in sequence.

    step = drain + reward_s + learner_s(tokens) + weight_sync_s. The replica (and its depth
    policy's acceptance estimates) carries over between steps, as a real engine does.
    """
    rollout, step = [], []
    for _ in range(num_steps):
        batch = lengths.sample(rng, training.trajectories_per_step)
        drain_s = simulate_drain(replica, batch).time_s
        tokens = float(batch.sum() + prompt_tokens * batch.size)
        rollout.append(drain_s)
        step.append(drain_s + training.reward_s + training.learner_s(tokens) + training.weight_sync_s)
        replica.depth.notify_weights_changed()
    return SyncResult(np.array(rollout), np.array(step), replica.stats)
