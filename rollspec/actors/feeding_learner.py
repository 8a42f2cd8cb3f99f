"""The learner group fed from the `scored` queue: rank 0 assembles the batch, the group's own
torch.distributed collective hands each rank its shard. Trajectories never pass through Ray's
object store or the driver; the driver only asks for a step and gets stats and group outcomes.

Built on the public methods of LearnerActor (train_step, publish, full_weights) and on
LearnerGroup's placement and call fan-out (`actor_class`, `_call`).
"""

import time

import torch
import torch.distributed as dist

from rollspec.actors.config import FeedSpec
from rollspec.actors.learner import LearnerActor, LearnerInputError
from rollspec.actors.learner_config import LearnerConfig
from rollspec.actors.learner_group import LearnerGroup
from rollspec.actors.metric_samples import learner_samples
from rollspec.actors.ray_metrics import RaySink
from rollspec.actors.scored_feed import ScoredFeed
from rollspec.rl.config import AdvantageConfig
from rollspec.rl.trajectory_batch import build_batch, filler_batch
from rollspec.transport import NO_SECURITY, SecurityConfig


class FeedingLearner(LearnerActor):
    """A learner rank that trains on batches rank 0 takes from the scored queue."""

    def attach_feed(self, spec: FeedSpec, broker_address: str, advantage: AdvantageConfig, run: str = "") -> None:
        """Rank 0 connects to the scored queue; every rank remembers how advantages are computed;
        `run` tags the live metrics each rank records after its steps."""
        self._advantage = advantage
        self._metrics = RaySink(run)
        self._feed = ScoredFeed(spec, broker_address=broker_address,
                                security=self.publisher_security) if self.rank == 0 else None

    def train_from_feed(self, step: int, forget: list[str], wait_s: float) -> dict:
        """Collective. Wait up to wait_s for a full batch for `step`; if one is ready, train on it,
        publish version step + 1 and only then ack its records. Returns {"trained", "resolutions"
        (rank 0: every group resolved by this call), timings and the learner's stats}."""
        if step != self.step:
            raise LearnerInputError(f"train_from_feed(step={step}) but this learner has taken {self.step} steps")
        start = time.perf_counter()
        assembled = self._feed.poll(step, forget=forget, wait_s=wait_s) if self.rank == 0 else None
        ready = [assembled is not None and assembled.samples is not None]
        dist.broadcast_object_list(ready, src=0)
        waited = time.perf_counter() - start
        resolutions = assembled.resolutions if assembled is not None else []
        if not ready[0]:
            return {"trained": False, "resolutions": resolutions, "wait_s": waited}
        shards = [None]
        if self.rank == 0:
            samples = assembled.samples
            # A batch whose every sample was dropped still takes its step (zero gradient), so that
            # learner steps and policy versions stay in lockstep with the controller's count.
            shards = (build_batch(samples, self._advantage).split(self.world_size, self.config.micro_batch_size)
                      if samples else [[filler_batch()] for _ in range(self.world_size)])
        mine = [None]
        dist.scatter_object_list(mine, shards if self.rank == 0 else None, src=0)
        batched = time.perf_counter()
        stats = self.train_step(mine[0])
        published = self.publish(step + 1)
        if self.rank == 0:
            self._feed.ack(assembled.to_ack_after_step)
        out = {"trained": True, "resolutions": resolutions, "wait_s": waited, "batch_s": batched - start - waited,
               "num_samples": len(assembled.samples) if assembled is not None else 0, **stats, **published}
        self._record_metrics(out)
        return out

    def _record_metrics(self, result: dict) -> None:
        rejected = {}
        if self._feed is not None:
            feed = self._feed.stats()
            rejected["scored"] = {**feed["rejected"], "unexpected_message": feed["unexpected_messages"]}
        self._metrics.record(learner_samples(f"learner-{self.rank}", result, rejected))

    def republish(self) -> dict:
        """Collective. Publish the current weights as the current version again (a restored learner's
        new publisher serves nothing until this)."""
        weights = self.full_weights()
        if weights is not None:
            self.publisher.publish(self.policy_version, weights)
        return {"version": self.policy_version}

    def fingerprint(self) -> dict[str, float]:
        """Collective. Sums of this learner's parameters and optimizer state over all ranks: equal
        fingerprints before a checkpoint and after its restore mean the state came back."""
        params = sum(float(getattr(p, "ds_tensor", p).detach().double().sum()) for p in self.engine.module.parameters())
        if self.config.zero_stage < 3 and self.rank != 0:
            params = 0.0  # below stage 3 every rank holds all parameters: count them once
        optimizer = getattr(self.optimizer, "optimizer", self.optimizer)
        moments = sum(float(v.detach().double().sum()) for state in optimizer.state.values() for k, v in state.items()
                      if torch.is_tensor(v) and k != "step")
        totals = torch.tensor([params, moments], dtype=torch.float64)
        dist.all_reduce(totals)
        return {"parameters": float(totals[0]), "optimizer": float(totals[1]), "step": float(self.step)}

    def feed_stats(self) -> dict:
        """The scored feed's counters (rank 0; empty elsewhere)."""
        return self._feed.stats() if self._feed is not None else {}

    def close(self) -> None:
        """Close the feed, then the publisher and the process group."""
        if getattr(self, "_feed", None) is not None:
            self._feed.close()
            self._feed = None
        super().close()


class FeedingLearnerGroup(LearnerGroup):
    """LearnerGroup whose ranks are FeedingLearner actors (placement, set-up and fan-out as there)."""

    def __init__(self, model_dir: str, config: LearnerConfig, *, security: SecurityConfig = NO_SECURITY):
        """`security`: the run's "learner" keys, for rank 0's weight publisher and scored-queue consumer."""
        super().__init__(model_dir, config, actor_class=FeedingLearner, publisher_security=security)

    def attach_feed(self, spec: FeedSpec, broker_address: str, advantage: AdvantageConfig, run: str = "") -> None:
        """Connect rank 0 to the scored queue (`run` tags the ranks' live metrics)."""
        self._call("attach_feed", spec, broker_address, advantage, run)

    def train_from_feed_async(self, step: int, forget: list[str], wait_s: float) -> list:
        """Start train_from_feed on every rank; returns the refs (rank 0 first) for `ray.wait`."""
        return [actor.train_from_feed.remote(step, forget, wait_s) for actor in self.actors]

    def republish(self) -> dict:
        """Every rank republishes the current version (see FeedingLearner.republish)."""
        return self._call("republish")

    def fingerprint(self) -> dict[str, float]:
        """Parameter and optimizer-state checksums over all ranks (see FeedingLearner.fingerprint)."""
        return self._call("fingerprint")

    def feed_stats(self) -> dict:
        """Rank 0's scored-feed counters."""
        return self._call("feed_stats")

