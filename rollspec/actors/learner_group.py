"""LearnerGroup: R LearnerActor ranks placed together by Ray, driven as one learner.

Placement: one placement group of R bundles of `cpus_per_rank` CPUs, STRICT_PACK, because the ranks
meet through a file in the node's temp dir and talk over 127.0.0.1, and so must share a node. A request the cluster can never satisfy fails
at once with the numbers; one that cannot be placed in `placement_timeout_s` (CPUs held by other
actors) fails then, and releases what it reserved.

Calls: each method runs on every rank (the ranks are a torch.distributed group and most methods
are collectives) and returns rank 0's result. If a rank fails, the group raises at once naming the
rank, without waiting for the others, which are typically blocked in a collective; such a group
is broken: `shutdown()` it and build a new one (from a checkpoint). The exceptions every rank raises
alike before any collective (LearnerInputError, LearnerCheckpointError) come through as
themselves and leave the group usable.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rollspec.actors.learner import LearnerActor, LearnerCheckpointError, LearnerInputError, LearnerState
from rollspec.actors.learner_config import LearnerConfig
from rollspec.actors.learner_env import free_loopback_port
from rollspec.engine.loader import read_config
from rollspec.engine.model_config import ModelConfig
from rollspec.rl.trajectory_batch import TrajectoryBatch
from rollspec.transport import NO_SECURITY, SecurityConfig


class LearnerPlacementError(RuntimeError):
    """The ranks cannot be placed: more CPUs than the cluster has, or none free in time."""


class LearnerRankError(RuntimeError):
    """A rank raised (or its process died) during a call; the group must be shut down."""

    def __init__(self, rank: int, method: str, error: RayError):
        # The rank's own exception reads better than Ray's wrapper (a colored remote traceback);
        # the wrapper stays chained as __cause__.
        cause = error.cause if isinstance(error, RayTaskError) and error.cause is not None else error
        super().__init__(f"learner rank {rank} failed in {method}(): {type(cause).__name__}: {cause}")
        self.rank, self.method, self.cause = rank, method, cause


class LearnerTimeoutError(TimeoutError):
    """Some ranks did not finish a call in time."""


class LearnerBatchError(ValueError):
    """A batch the model cannot take (token ids outside its vocabulary)."""


class LearnerGroup:
    """R DeepSpeed ranks training the policy in `model_dir` (a Hugging Face format directory).

    Needs a running Ray (`ray.init`) whose processes keep to loopback
    (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before Ray starts; the ranks get it too).
    """

    def __init__(self, model_dir: str | Path, config: LearnerConfig, *,
                 actor_class: type[LearnerActor] = LearnerActor, publisher_security: SecurityConfig = NO_SECURITY):
        """Place the ranks, start them, and set up DeepSpeed on all of them (blocks until ready).
        `actor_class` may be a LearnerActor subclass that adds methods (call them with `_call`);
        `publisher_security` secures the weight publisher (see LearnerActor)."""
        self.config, self.model_dir = config, str(model_dir)
        self.model_config = ModelConfig.from_hf_dict(read_config(model_dir))
        self._placement = self._place(config)
        port = free_loopback_port()  # still named in the env: DeepSpeed's CPU comm op keys on it
        rendezvous_id = uuid.uuid4().hex
        remote = ray.remote(actor_class)
        # Ray's own loopback switch must be in the rank processes' environment from their start.
        runtime_env = {"env_vars": {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "DS_ACCELERATOR": "cpu"}}
        self.actors = [
            remote.options(num_cpus=config.cpus_per_rank, runtime_env=runtime_env,
                           scheduling_strategy=PlacementGroupSchedulingStrategy(self._placement, placement_group_bundle_index=rank))
            .remote(rank, config.num_ranks, self.model_dir, config, master_port=port, rendezvous_id=rendezvous_id,
                    publisher_security=publisher_security)
            for rank in range(config.num_ranks)
        ]
        try:
            info = self._call("setup", timeout_s=config.setup_timeout_s)
        except BaseException:
            self.shutdown()
            raise
        self.publisher_address: str = info["publisher_address"]

    def train_step(self, batch: TrajectoryBatch) -> dict[str, float]:
        """One optimizer step on `batch`, split across the ranks into micro-batches of
        config.micro_batch_size. Returns the global stats (see `LearnerActor.train_step`) plus the
        batch's policy-version range and the wall time seen here."""
        top = int(batch.input_ids_BT.max())
        if top >= self.model_config.vocab_size or int(batch.input_ids_BT.min()) < 0:
            raise LearnerBatchError(f"batch has token id {top} outside [0, {self.model_config.vocab_size}) "
                                    f"of the model in {self.model_dir}")
        start = time.perf_counter()
        shards = batch.split(self.config.num_ranks, self.config.micro_batch_size)
        stats = self._call("train_step", per_rank_args=[(shard,) for shard in shards])
        stats.update(min_policy_version=float(batch.policy_versions_B.min()),
                     max_policy_version=float(batch.policy_versions_B.max()),
                     num_sequences=float(batch.num_sequences), wall_time_s=time.perf_counter() - start)
        return stats

    def full_weights(self) -> dict:
        """The full weights under Hugging Face names (gathered under ZeRO-3), as rank 0 has them."""
        return self._call("full_weights")

    def publish(self, version: int) -> dict[str, float]:
        """Gather and publish the weights as `version` on the broadcast at `publisher_address`."""
        return self._call("publish", version)

    def save_checkpoint(self, directory: str | Path, tag: str, client_state: dict | None = None) -> str:
        """DeepSpeed checkpoint of every rank under directory/tag; returns its path."""
        return self._call("save_checkpoint", str(directory), tag, client_state)

    def load_checkpoint(self, directory: str | Path, tag: str) -> dict:
        """Restore every rank from directory/tag; returns the stored client_state."""
        return self._call("load_checkpoint", str(directory), tag)

    def state(self) -> LearnerState:
        """Steps taken and the last published policy version."""
        return self._call("state")

    def parameter_numel(self) -> list[dict[str, int]]:
        """Per rank, the parameter elements it stores and the model's total."""
        return self._call("parameter_numel", all_ranks=True)

    def shutdown(self) -> None:
        """Stop the ranks and release their CPUs. Safe to call twice and on a broken group."""
        actors, self.actors = getattr(self, "actors", []), []
        if actors:
            closes = [actor.close.remote() for actor in actors]
            ray.wait(closes, num_returns=len(closes), timeout=30.0)  # best effort; a hung rank is killed below
        for actor in actors:
            ray.kill(actor)
        placement, self._placement = getattr(self, "_placement", None), None
        if placement is not None:
            remove_placement_group(placement)

    def __enter__(self) -> LearnerGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    @staticmethod
    def _place(config: LearnerConfig):
        needed = config.num_ranks * config.cpus_per_rank
        total = ray.cluster_resources().get("CPU", 0.0)
        if needed > total:
            raise LearnerPlacementError(
                f"{config.num_ranks} learner ranks x {config.cpus_per_rank} CPUs = {needed} CPUs, but the Ray cluster "
                f"has {total}; lower num_ranks or cpus_per_rank")
        bundles = [{"CPU": config.cpus_per_rank} for _ in range(config.num_ranks)]
        placement = placement_group(bundles, strategy="STRICT_PACK")
        try:
            ray.get(placement.ready(), timeout=config.placement_timeout_s)
        except GetTimeoutError:
            remove_placement_group(placement)
            raise LearnerPlacementError(
                f"could not place {config.num_ranks} learner ranks x {config.cpus_per_rank} CPUs on one node within "
                f"{config.placement_timeout_s} s; free CPUs now: {ray.available_resources().get('CPU', 0.0)} of "
                f"{total} (other actors hold the rest, or no single node is big enough)") from None
        return placement

    def _call(self, method: str, *args: object, per_rank_args: list[tuple] | None = None,
              timeout_s: float | None = None, all_ranks: bool = False):
        refs = {getattr(actor, method).remote(*(per_rank_args[rank] if per_rank_args else args)): rank
                for rank, actor in enumerate(self.actors)}
        deadline = time.monotonic() + (timeout_s or self.config.call_timeout_s)
        results: dict[int, object] = {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=max(deadline - time.monotonic(), 0.0))
            if not ready:
                ranks = sorted(refs[ref] for ref in pending)
                raise LearnerTimeoutError(f"learner ranks {ranks} did not finish {method}() within "
                                          f"{timeout_s or self.config.call_timeout_s} s")
            rank = refs[ready[0]]
            try:
                results[rank] = ray.get(ready[0])
            except RayError as exc:
                # Raised by every rank alike before any collective started: the group is intact.
                if isinstance(exc, RayTaskError) and isinstance(exc.cause, (LearnerInputError, LearnerCheckpointError)):
                    raise exc.cause from None
                raise LearnerRankError(rank, method, exc) from exc
        return [results[rank] for rank in range(len(self.actors))] if all_ranks else results[0]
