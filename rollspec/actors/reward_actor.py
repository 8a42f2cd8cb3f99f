"""RewardActor: a RewardLoop over the trajectories and scored queues, as a Ray actor.

The built-in task reward runs in this process; a user function runs in a killable child process
(reward_sandbox.py) so that one that hangs costs a timeout, not the actor.
"""

import os
import sys

import torch

from rollspec.actors.config import SCORED, TRAJECTORIES, RewardSpec
from rollspec.actors.loop_thread import LoopThread
from rollspec.actors.metric_samples import RewardSamples, endpoint_faults, endpoint_rejections
from rollspec.actors.process_heap import freeze_startup_heap
from rollspec.actors.ray_metrics import PeriodicExport, RaySink
from rollspec.actors.reward_fn import BUILTIN, builtin_reward_function
from rollspec.actors.reward_loop import RewardLoop
from rollspec.actors.reward_sandbox import SandboxedRewardFunction
from rollspec.transport import NO_SECURITY, ConsumerConfig, ProducerConfig, SecurityConfig, ZmqConsumer, ZmqProducer


class RewardActor:
    """Scores rollout records; a reward error is recorded on the record and counted, never raised.

    Construction fails with RewardFunctionError if a user reward function cannot be imported.
    """

    def __init__(self, spec: RewardSpec, *, name: str, broker_address: str, security: SecurityConfig = NO_SECURITY,
                 run: str = ""):
        """`security`: the run's "reward" keys (CURVE on both channels); `run` tags its live metrics."""
        torch.set_num_threads(spec.process.num_threads)
        self.name = name
        sys.path.extend(p for p in spec.python_path if p not in sys.path)
        if spec.function == BUILTIN:
            self._score = builtin_reward_function()
        else:
            self._score = SandboxedRewardFunction(spec.function, timeout_s=spec.timeout_s)
        self._trajectories = ZmqConsumer(broker_address, TRAJECTORIES,
                                         config=ConsumerConfig(window_items=4 * spec.batch_items), security=security,
                                         faults=spec.faults.for_endpoint(f"{name}/{TRAJECTORIES}"))
        self._scored = ZmqProducer(broker_address, SCORED, config=ProducerConfig(checksum_tensors=True),
                                   security=security, faults=spec.faults.for_endpoint(f"{name}/{SCORED}"))
        self._loop = RewardLoop(trajectories=self._trajectories, scored=self._scored, score=self._score,
                                batch_items=spec.batch_items)
        self._export = PeriodicExport(RaySink(run), self.status, RewardSamples(name))
        freeze_startup_heap()
        self._thread = LoopThread(self._step, f"{name}-loop")

    def _step(self) -> None:
        self._loop.run_once()
        self._export.tick()

    def status(self) -> dict:
        """Counters (scored, reward errors with the last one, time spent scoring) and any loop failure."""
        rejected = endpoint_rejections({TRAJECTORIES: self._trajectories, SCORED: self._scored})
        rejected["loop"] = {"unexpected_message": self._loop.stats.num_unexpected_messages}
        out = {"name": self.name, **self._loop.stats.as_dict(), "error": self._thread.error, "pid": os.getpid(),
               "rejected": rejected, "faults": endpoint_faults((self._trajectories, self._scored))}
        if isinstance(self._score, SandboxedRewardFunction):
            out["num_worker_restarts"] = self._score.num_restarts
        return out

    def stop(self) -> dict:
        """Stop the loop, close the sockets and the reward worker, and return status()."""
        self._thread.stop(timeout_s=60.0)
        self._trajectories.close()
        self._scored.close()
        self._score.close()
        return self.status()
