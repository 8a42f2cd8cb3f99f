"""The draft-refresh loop: policy versions and trajectories in, draft versions out.

Each policy version that arrives is handed to the refresher at once (its teacher is always the
newest policy); trajectories from the draft-samples queue go into its buffer and are acked. Once
`every_policy_versions` new versions have arrived since the last refresh, the refresher trains and
the result is published as the next draft version. A refresh with too little data yet is retried
when more arrives; a refresh that raises is counted and reported, and nothing is published: the
rollout actors keep the last good draft version, and the next due refresh tries again.
"""

import dataclasses
import time
import traceback
from typing import Any, Protocol

import torch

from rollspec.actors.messages import RolloutRecord
from rollspec.models.distiller_state import TrainerState
from rollspec.models.draft_distiller import RefreshResult
from rollspec.models.token_batch import TokenSequence
from rollspec.transport import Receiver, WeightSink, WeightSource

Weights = dict[str, torch.Tensor]
MAX_HISTORY = 200  # per-refresh records kept in status() (polled often): a long run keeps the newest


class Refresher(Protocol):
    """What the loop needs from a drafter trainer (`models.draft_distiller.DraftDistiller` is one)."""

    def set_policy(self, weights_hf: Weights) -> None: ...

    def add_sequences(self, sequences: list[TokenSequence]) -> None: ...

    def refresh(self) -> RefreshResult | None: ...

    def buffered(self) -> tuple[TokenSequence, ...]:
        """Trajectories held to train on (called from the checkpointing thread)."""
        ...

    def trainer_state(self) -> TrainerState | None:
        """Optimizer and RNG state as they stand (None: nothing worth saving)."""
        ...


class PassThrough:
    """A refresher that republishes the draft unchanged (versioning without training)."""

    def __init__(self, draft_weights: Weights):
        self._weights = draft_weights

    def set_policy(self, weights_hf: Weights) -> None:
        pass

    def add_sequences(self, sequences: list[TokenSequence]) -> None:
        pass

    def refresh(self) -> RefreshResult:
        return RefreshResult(self._weights, 0, 0.0, 0.0, 0.0, False)

    def buffered(self) -> tuple[TokenSequence, ...]:
        return ()

    def trainer_state(self) -> None:
        return None


@dataclasses.dataclass(slots=True)
class RefreshStats:
    """Running totals of the draft-refresh actor, and one record per published refresh."""

    policy_version: int = 0
    draft_version: int = 0
    num_published: int = 0
    num_samples: int = 0
    num_sample_tokens: int = 0
    num_refresh_failures: int = 0
    num_refresh_waits: int = 0
    """Refreshes that were due but waited for enough trajectories."""
    refresh_s: float = 0.0
    last_error: str = ""
    history: list[dict] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The totals as a plain dict."""
        return dataclasses.asdict(self)


def record_sequence(record: RolloutRecord) -> TokenSequence:
    """A trajectory as a distillation sequence: prompt then response; the response is what is trained on."""
    return TokenSequence(tuple(record.prompt_token_ids) + tuple(record.token_ids), len(record.prompt_token_ids))


class DraftRefreshLoop:
    """Publishes a refreshed draft version for every `every_policy_versions` policy versions seen.

    Draft versions only go up, starting from `draft_version`; a version is published only from a
    refresh that completed (invariant 4 and "a failed refresh leaves rollouts on the last good draft").
    """

    def __init__(self, *, draft_weights: Weights, draft_version: int, policy_version: int, policy: WeightSink,
                 publisher: WeightSource, samples: Receiver | None, every_policy_versions: int = 1,
                 refresher: Refresher | None = None):
        """`draft_version` is the version of `draft_weights`, last refreshed at `policy_version`
        (both 0 on a fresh run, the checkpointed pair on a resume)."""
        self.stats = RefreshStats(draft_version=draft_version, policy_version=policy_version)
        self._policy, self._publisher, self._samples = policy, publisher, samples
        self._every = every_policy_versions
        self._refresher = refresher if refresher is not None else PassThrough(draft_weights)
        self._last_refresh_policy = policy_version
        self._due = False
        self._has_policy = False
        publisher.publish(draft_version, draft_weights)
        self.published: tuple[int, int, Weights, TrainerState | None] = (
            draft_version, policy_version, draft_weights, self._refresher.trainer_state())
        """(draft version, policy version seen, weights, the trainer state they were reached with) last
        published: what a checkpoint saves, with `buffered()`. Replaced as one tuple, never mutated, so
        another thread reads a consistent set."""

    def buffered(self) -> tuple[TokenSequence, ...]:
        """The refresher's trajectories to train on, as they stand (thread-safe): what a checkpoint keeps of them."""
        return self._refresher.buffered()

    def run_once(self, idle_wait_s: float = 0.05) -> None:
        """Take waiting trajectories (waiting up to idle_wait_s) and the newest policy; refresh if due."""
        got_samples = self._take_samples(idle_wait_s)
        # The first policy taken may be the version we started at (a resumed learner republishes it):
        # the refresher's teacher must hold it, though it does not count as a new version.
        wanted = self.stats.policy_version + int(self._has_policy)
        latest = self._policy.wait_for(wanted, 0.0 if self._samples else idle_wait_s)
        if latest is not None:
            version, weights = latest
            self._refresher.set_policy(weights)
            self._has_policy = True
            self.stats.policy_version = version
            if version - self._last_refresh_policy >= self._every:
                self._last_refresh_policy = version
                self._due = True
        elif not got_samples:
            return
        if self._due:
            self._refresh()

    def _take_samples(self, wait_s: float) -> bool:
        if self._samples is None:
            return False
        deliveries = self._samples.get_batch(256, timeout_s=wait_s)
        sequences = []
        for delivery in deliveries:
            record = delivery.item
            if type(record) is RolloutRecord and record.token_ids and not record.drop_reason:
                sequences.append(record_sequence(record))
                self.stats.num_samples += 1
                self.stats.num_sample_tokens += len(record.token_ids)
        if sequences:
            self._refresher.add_sequences(sequences)
        self._samples.ack_many(deliveries)
        return bool(sequences)

    def _refresh(self) -> None:
        start = time.perf_counter()
        try:
            result = self._refresher.refresh()
        except Exception:  # deliberate: a refresh that breaks must leave rollouts on the last good draft
            self._due = False
            self.stats.num_refresh_failures += 1
            self.stats.last_error = traceback.format_exc()[-2000:]
            return
        finally:
            self.stats.refresh_s += time.perf_counter() - start
        if result is None:
            self.stats.num_refresh_waits += 1
            return
        self._due = False
        self.stats.draft_version += 1
        self._publisher.publish(self.stats.draft_version, result.weights)
        self.published = (self.stats.draft_version, self.stats.policy_version, result.weights, result.trainer)
        self.stats.num_published += 1
        self.stats.history = (self.stats.history + [{
            "draft_version": self.stats.draft_version, "policy_version": self.stats.policy_version,
            "num_steps": result.num_steps, "kl_before": result.kl_before, "kl_after": result.kl_after,
            "wall_s": result.wall_s, "stopped_by_budget": result.stopped_by_budget,
            "num_samples": self.stats.num_samples}])[-MAX_HISTORY:]
