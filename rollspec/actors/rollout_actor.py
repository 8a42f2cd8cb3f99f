"""RolloutActor: the engine, its drafter and the depth scheduler behind a RolloutLoop, as a Ray actor.

The loop runs on its own thread from construction on, so an actor Ray restarts after a crash
goes back to work by itself; Ray method calls (status, stop) are served on the actor's main thread.
"""

import os
import time
from pathlib import Path

import torch

from rollspec.actors.config import DRAFT_SAMPLES, PROMPTS, TRAJECTORIES, RolloutSpec
from rollspec.actors.draft_checkpoint import load_draft
from rollspec.actors.loop_thread import LoopThread
from rollspec.actors.metric_samples import RolloutSamples, endpoint_faults, endpoint_rejections
from rollspec.actors.process_heap import freeze_startup_heap
from rollspec.actors.ray_metrics import PeriodicExport, RaySink
from rollspec.actors.rollout_loop import RolloutLoop
from rollspec.backends.drafter_spec import DrafterSpec
from rollspec.backends.factory import make_generator
from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import DepthPolicy, FixedDepth
from rollspec.engine.drafters.base import Drafter
from rollspec.engine.drafters.build import build_drafter
from rollspec.engine.engine import Engine
from rollspec.engine.loader import LoadedModel, load_model
from rollspec.engine.profiling import profile_step_costs
from rollspec.scheduler import DepthConfig, DepthMode, DepthScheduler, profile_points, profiled_costs
from rollspec.transport import (
    NO_SECURITY,
    ConsumerConfig,
    ProducerConfig,
    SecurityConfig,
    WeightSubscriber,
    ZmqConsumer,
    ZmqProducer,
)

PROFILE_PROMPT_LEN = 24  # about a task prompt's length at the middle difficulty


class RolloutActorError(RuntimeError):
    """The rollout loop stopped on an unexpected error (the traceback is in the message)."""


class RolloutActor:
    """Generates GRPO groups for leased prompts and swaps policy / draft weights between generations.

    Invariants: every record carries the one policy and draft version that generated it; a prompt
    group is acked only after all its records are confirmed by the trajectories queue.
    """

    def __init__(self, spec: RolloutSpec, *, name: str, broker_address: str, policy_address: str,
                 draft_address: str | None = None, send_draft_samples: bool = False, min_policy_version: int = 0,
                 initial_draft_dir: str | None = None, security: SecurityConfig = NO_SECURITY, run: str = ""):
        """`initial_draft_dir`: a verified checkpoint's draft directory whose weights and version the drafter
        starts from (a run resumed without draft refresh keeps the refreshed draft it had); `security`:
        the run's "rollout" keys (CURVE on every channel, signed weight versions only); `run` tags this
        actor's live metrics."""
        torch.set_num_threads(spec.process.num_threads)
        self.name = name
        start = time.perf_counter()
        self._profile: dict = {}
        if spec.backend == "vllm":  # k fixed at engine start (vLLM cannot re-plan it per step)
            depth, has_drafter = FixedDepth(spec.k), spec.drafter != "none" and spec.k > 0
            engine = make_generator("vllm", policy_path=spec.policy_path, config=spec.engine,
                                    drafter=DrafterSpec(kind=spec.drafter, path=spec.draft_path, k=spec.k))
        else:
            policy = load_model(spec.policy_path, dtype=spec.engine.torch_dtype, device=spec.engine.device,
                                max_positions=spec.engine.cache_len)
            drafter = self._drafter(spec, policy, spec.engine)
            depth, has_drafter = self._depth(spec, policy, drafter), drafter is not None
            engine = Engine(policy.model, spec.engine, drafter=drafter, depth=depth)
        if initial_draft_dir is not None and has_drafter:
            _start_from_saved_draft(engine, spec.drafter, Path(initial_draft_dir))
        group_windows = max(1, spec.engine.max_batch_size // spec.group_size)
        faults = spec.faults.for_endpoint
        self._prompts = ZmqConsumer(broker_address, PROMPTS, config=ConsumerConfig(window_items=group_windows),
                                    security=security, faults=faults(f"{name}/{PROMPTS}"))
        # Records carry logprob tensors the learner trains on: CRC them too, or a flipped bit in one
        # (found by `rollspec chaos corrupt`) trains silently on a wrong number.
        self._trajectories = ZmqProducer(broker_address, TRAJECTORIES, config=ProducerConfig(checksum_tensors=True),
                                         security=security, faults=faults(f"{name}/{TRAJECTORIES}"))
        self._draft_samples = ZmqProducer(broker_address, DRAFT_SAMPLES, security=security,
                                          faults=faults(f"{name}/{DRAFT_SAMPLES}")) if send_draft_samples else None
        self._policy_weights = WeightSubscriber(policy_address, security=security, faults=faults(f"{name}/policy"))
        self._draft_weights = WeightSubscriber(draft_address, security=security, faults=faults(f"{name}/draft")) \
            if draft_address and has_drafter else None
        notify = depth.notify_weights_changed if isinstance(depth, DepthScheduler) else None
        self._loop = RolloutLoop(engine, prompts=self._prompts, trajectories=self._trajectories,
                                 sampling=spec.sampling, name=name, group_size=spec.group_size,
                                 policy_weights=self._policy_weights, draft_weights=self._draft_weights,
                                 draft_samples=self._draft_samples, on_weights_changed=notify)
        if not self._loop.wait_for_policy(min_policy_version, spec.start_timeout_s):
            raise RolloutActorError(f"{name}: policy version {min_policy_version} did not arrive within "
                                    f"{spec.start_timeout_s}s from {policy_address}")
        self.start_s = time.perf_counter() - start
        self._depth_policy = depth
        self._slowdown = spec.slowdown
        self._export = PeriodicExport(RaySink(run), self.status, RolloutSamples(name))
        freeze_startup_heap()
        self._thread = LoopThread(self._step, f"{name}-loop")

    @staticmethod
    def _drafter(spec: RolloutSpec, policy: LoadedModel, config: EngineConfig) -> Drafter | None:
        return build_drafter(spec.drafter, policy=policy, config=config, draft_path=spec.draft_path)

    def _depth(self, spec: RolloutSpec, policy: LoadedModel, drafter: Drafter | None) -> DepthPolicy:
        """Fixed k, or the adaptive scheduler planning with costs profiled here, on this engine."""
        if drafter is None or spec.k == 0:
            return FixedDepth(0)
        if spec.depth == "fixed":
            return FixedDepth(spec.k)
        batch_sizes, qs = profile_points(spec.engine.max_batch_size, spec.k)
        start = time.perf_counter()
        profile = profile_step_costs(policy.model, spec.engine, batch_sizes=batch_sizes, qs=qs,
                                     drafter_factory=lambda cfg: self._drafter(spec, policy, cfg),
                                     repeats=spec.profile_repeats, prompt_len=PROFILE_PROMPT_LEN)
        self._profile = {"wall_s": round(time.perf_counter() - start, 2),
                         "target_ms": {f"B{b}_q{q}": round(1e3 * s, 3) for (b, q), s in profile.target_s.items()},
                         "draft_ms": {f"B{b}": round(1e3 * s, 3) for b, s in profile.draft_s.items()},
                         "catch_up_ms": {f"B{b}": round(1e3 * s, 3) for b, s in profile.catch_up_s.items()}}
        return DepthScheduler(DepthConfig(k_max=spec.k, mode=DepthMode.ADAPTIVE), *profiled_costs(profile))

    def _step(self) -> None:
        engine_s = self._loop.stats.engine_s
        self._loop.run_once()
        if self._slowdown > 1.0:  # chaos: a straggler, slowed in proportion to its real engine time
            time.sleep((self._slowdown - 1.0) * (self._loop.stats.engine_s - engine_s))
        self._export.tick()

    def status(self) -> dict:
        """Versions held, counters, the depth scheduler's choices and, if the loop died, its traceback."""
        out = {"name": self.name, **self._loop.stats.as_dict(), "error": self._thread.error, "start_s": self.start_s,
               "pid": os.getpid(), "rejected": self._rejections(),
               "faults": endpoint_faults((self._prompts, self._trajectories, self._draft_samples, self._policy_weights,
                                          self._draft_weights))}
        if isinstance(self._depth_policy, DepthScheduler):
            stats = self._depth_policy.stats
            out["num_steps_by_k"] = list(stats.num_steps_by_k)
        elif isinstance(self._depth_policy, FixedDepth):  # every engine step runs at the one k
            out["num_steps_by_k"] = [0] * self._depth_policy.k + [out["num_engine_steps"]]
        return out

    def _rejections(self) -> dict[str, dict[str, int]]:
        out = endpoint_rejections({PROMPTS: self._prompts, TRAJECTORIES: self._trajectories,
                                   DRAFT_SAMPLES: self._draft_samples, "policy_weights": self._policy_weights,
                                   "draft_weights": self._draft_weights})
        stats = self._loop.stats
        out["engine"] = {"unexpected_message": stats.num_unexpected_messages,
                         "weights_do_not_fit": stats.num_rejected_weights}
        return out

    def profile(self) -> dict:
        """The start-up cost profile (empty unless the depth is adaptive)."""
        return self._profile

    def stop(self) -> dict:
        """Stop the loop, release the sockets (un-acked prompts go back to the queue) and return status()."""
        self._thread.stop(timeout_s=60.0)
        for endpoint in (self._prompts, self._trajectories, self._draft_samples, self._policy_weights,
                         self._draft_weights):
            if endpoint is not None:
                endpoint.close()
        return self.status()


def _start_from_saved_draft(engine, drafter: str, directory: Path) -> None:
    """Load a checkpoint's draft weights under their own version (DraftCheckpointError if they are not `drafter`'s)."""
    saved, weights = load_draft(directory, drafter)
    if saved.draft_version > engine.draft_version:
        engine.update_draft(weights, saved.draft_version)
