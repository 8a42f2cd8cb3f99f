"""The draft-refresh loop: policy versions and draft training samples in, draft versions out.

This is the wiring the distillation issue will fill in. Today the drafter passes through
unchanged: each time `every_policy_versions` new policy versions have arrived, the same draft
weights are published as the next draft version, so the versioning path (publish, rollout swap,
version recorded on every trajectory) runs for real. Samples are consumed, counted and acked.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from rollspec.transport import Receiver, WeightSink, WeightSource

Weights = dict[str, torch.Tensor]


@dataclasses.dataclass(slots=True)
class RefreshStats:
    """Running totals of the draft-refresh actor."""

    policy_version: int = 0
    draft_version: int = 0
    num_published: int = 0
    num_samples: int = 0
    num_sample_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The totals as a plain dict."""
        return dataclasses.asdict(self)


class DraftRefreshLoop:
    """Publishes a new draft version for every `every_policy_versions` policy versions seen.

    `refresh(policy_weights, draft_weights)` returns the next draft weights; the pass-through one
    returns `draft_weights` unchanged. Draft versions only go up, starting from `draft_version`.
    """

    def __init__(self, *, draft_weights: Weights, draft_version: int, policy_version: int, policy: WeightSink,
                 publisher: WeightSource, samples: Receiver | None, every_policy_versions: int = 1,
                 refresh: Callable[[Weights, Weights], Weights] = lambda policy, draft: draft):
        """`draft_version` is the version of `draft_weights`, last refreshed at `policy_version`
        (both 0 on a fresh run, the checkpointed pair on a resume)."""
        self.stats = RefreshStats(draft_version=draft_version, policy_version=policy_version)
        self._draft_weights = draft_weights
        self._policy, self._publisher, self._samples = policy, publisher, samples
        self._every = every_policy_versions
        self._refresh = refresh
        self._last_refresh_policy = policy_version
        publisher.publish(draft_version, draft_weights)

    def run_once(self, idle_wait_s: float = 0.05) -> None:
        """Take waiting samples (waiting up to idle_wait_s), and publish if enough policy versions came."""
        if self._samples is not None:
            deliveries = self._samples.get_batch(256, timeout_s=idle_wait_s)
            for delivery in deliveries:
                self.stats.num_samples += 1
                self.stats.num_sample_tokens += len(getattr(delivery.item, "token_ids", ()))
            self._samples.ack_many(deliveries)
        latest = self._policy.wait_for(self.stats.policy_version + 1, 0.0 if self._samples else idle_wait_s)
        if latest is None:
            return
        version, weights = latest
        self.stats.policy_version = version
        if version - self._last_refresh_policy >= self._every:
            self._last_refresh_policy = version
            self._draft_weights = self._refresh(weights, self._draft_weights)
            self.stats.draft_version += 1
            self._publisher.publish(self.stats.draft_version, self._draft_weights)
            self.stats.num_published += 1
