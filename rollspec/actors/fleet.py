"""The rollout, reward and draft-refresh actors of one run: Ray options, start-up, status polling, stop.

Every actor process gets Ray's loopback switch (and vLLM's) in its environment from the start
(see ENVIRONMENT.md), a fractional CPU reservation from the config, and `max_restarts` so that a
crashed actor comes back and goes to work again by itself (its leased items go to the others).
"""

import dataclasses
import shutil
import time
from pathlib import Path

import ray
from ray.exceptions import RayActorError

from rollspec.actors.config import DraftRefreshSpec, RewardSpec, RolloutSpec
from rollspec.actors.draft_refresh_actor import DraftRefreshActor
from rollspec.actors.loopback import LOOPBACK_ENV
from rollspec.actors.reward_actor import RewardActor
from rollspec.actors.rollout_actor import RolloutActor
from rollspec.transport import NO_SECURITY, SecurityConfig


class FleetError(RuntimeError):
    """An actor failed to start, or its loop stopped on an error (the message carries its traceback)."""


def actor_options(num_cpus: float, max_restarts: int) -> dict:
    """Ray options every rollspec actor gets."""
    return {"num_cpus": num_cpus, "max_restarts": max_restarts, "runtime_env": {"env_vars": dict(LOOPBACK_ENV)}}


@dataclasses.dataclass(frozen=True, slots=True)
class FleetStatus:
    """One poll of every actor. `rollouts` holds only the actors that answered (a restarting one does not)."""

    rollouts: list[dict]
    rewards: list[dict]
    refresh: dict | None
    num_unavailable: int

    @property
    def min_policy_version(self) -> int | None:
        """The oldest policy version any answering rollout actor holds (None if none answered)."""
        return min((s["policy_version"] for s in self.rollouts), default=None)


class Fleet:
    """Handles of the run's actors (not the learner group)."""

    def __init__(self, run: str = ""):
        """`run` tags the actors' live metrics."""
        self.run = run
        self.rollouts: list = []
        self.rewards: list = []
        self.refresh = None
        self.num_refresh_lost = 0
        self._status_timeout_s = 30.0
        self._pids: dict[str, int] = {}
        self.restarts: dict[str, int] = {}
        """Times each actor came back in a new process (seen as a new pid in its status)."""

    def start_rewards(self, spec: RewardSpec, *, count: int, num_cpus: float, max_restarts: int,
                      broker_address: str, security: SecurityConfig = NO_SECURITY) -> None:
        """Create the reward actors (returns at once; `wait_ready` waits for their constructors).
        `security` (here and below) carries the role's keys: they reach the actor only as a Ray argument."""
        remote = ray.remote(RewardActor).options(**actor_options(num_cpus, max_restarts))
        self.rewards = [remote.remote(spec, name=f"reward-{i}", broker_address=broker_address, security=security,
                                      run=self.run) for i in range(count)]

    def start_refresh(self, spec: DraftRefreshSpec, *, num_cpus: float, broker_address: str, policy_address: str,
                      draft_version: int, policy_version: int, restore_dir: str | None = None,
                      security: SecurityConfig = NO_SECURITY) -> str:
        """Create the draft-refresh actor (from a checkpoint's draft directory if `restore_dir`) and return
        its draft publisher's address."""
        remote = ray.remote(DraftRefreshActor).options(**actor_options(num_cpus, 0))
        self.refresh = remote.remote(spec, broker_address=broker_address, policy_address=policy_address,
                                     draft_version=draft_version, policy_version=policy_version,
                                     restore_dir=restore_dir, security=security, run=self.run)
        return self._get(self.refresh.address.remote(), "draft-refresh", timeout_s=600.0)

    def save_draft(self, directory: Path) -> dict | None:
        """Have the draft-refresh actor write its latest published draft into `directory` (a checkpoint's
        draft directory); its description, or None if there is no refresh actor or it died meanwhile
        (then nothing is left in `directory`: the checkpoint goes on without a draft)."""
        if self.refresh is None:
            return None
        try:
            return ray.get(self.refresh.save_draft.remote(str(directory)), timeout=self._status_timeout_s)
        except (RayActorError, ray.exceptions.GetTimeoutError):
            shutil.rmtree(directory, ignore_errors=True)
            return None

    def start_rollouts(self, spec: RolloutSpec, *, count: int, num_cpus: float, max_restarts: int,
                       broker_address: str, policy_address: str, draft_address: str | None,
                       min_policy_version: int, initial_draft_dir: str | None = None,
                       security: SecurityConfig = NO_SECURITY, num_slow: int = 0) -> None:
        """Create the rollout actors (returns at once; `wait_ready` waits for their constructors). The
        first `num_slow` keep `spec.slowdown` (chaos: stragglers); the others run at full speed.
        `initial_draft_dir`: a checkpoint's draft directory their drafters start from (see RolloutActor)."""
        remote = ray.remote(RolloutActor).options(**actor_options(num_cpus, max_restarts))
        fast = dataclasses.replace(spec, slowdown=1.0)
        self.rollouts = [remote.remote(spec if i < num_slow else fast, name=f"rollout-{i}", broker_address=broker_address,
                                       policy_address=policy_address, draft_address=draft_address,
                                       send_draft_samples=self.refresh is not None,
                                       min_policy_version=min_policy_version, initial_draft_dir=initial_draft_dir,
                                       security=security, run=self.run)
                         for i in range(count)]

    def wait_ready(self, timeout_s: float = 900.0) -> FleetStatus:
        """Block until every actor finished its constructor; FleetError naming the first that failed."""
        named = ([(f"rollout-{i}", a) for i, a in enumerate(self.rollouts)]
                 + [(f"reward-{i}", a) for i, a in enumerate(self.rewards)])
        deadline = time.monotonic() + timeout_s
        for name, actor in named:
            self._get(actor.status.remote(), name, timeout_s=max(1.0, deadline - time.monotonic()))
        return self.poll()

    def poll(self) -> FleetStatus:
        """Status of every actor; FleetError if an actor's loop died on an error."""
        refs = [a.status.remote() for a in self.rollouts + self.rewards]
        refresh_ref = self.refresh.status.remote() if self.refresh is not None else None
        answered, unavailable = [], 0
        for ref in refs:
            try:
                answered.append(ray.get(ref, timeout=self._status_timeout_s))
            except RayActorError:
                unavailable += 1  # dead or restarting; Ray restarts it up to max_restarts
        refresh = None
        if refresh_ref is not None:
            try:
                refresh = ray.get(refresh_ref, timeout=self._status_timeout_s)
            except RayActorError:
                # The draft-refresh actor is not restarted (its versions would start over): rollouts keep
                # the last draft they hold, which stays lossless, only less fresh.
                self.refresh, self.num_refresh_lost = None, self.num_refresh_lost + 1
        for status in answered + ([refresh] if refresh else []):
            if status.get("error"):
                raise FleetError(f"{status.get('name', 'draft-refresh')} stopped on an error:\n{status['error']}")
        self._count_restarts(answered + ([refresh] if refresh else []))
        rollouts = [s for s in answered if s["name"].startswith("rollout-")]
        rewards = [s for s in answered if s["name"].startswith("reward-")]
        return FleetStatus(rollouts, rewards, refresh, unavailable)

    def _count_restarts(self, statuses: list[dict]) -> None:
        # Ray restarts a crashed actor in a new process under the same handle: a new pid is a restart.
        for status in statuses:
            name, pid = status.get("name"), status.get("pid")
            if name is None or pid is None:
                continue
            self.restarts.setdefault(name, 0)
            if self._pids.get(name, pid) != pid:
                self.restarts[name] += 1
            self._pids[name] = pid

    def profiles(self) -> list[dict]:
        """Each rollout actor's start-up cost profile ({} for one that is restarting or dead: a summary
        must not fail on an actor fault the run itself survived)."""
        out = []
        for ref in [a.profile.remote() for a in self.rollouts]:
            try:
                out.append(ray.get(ref, timeout=self._status_timeout_s))
            except (RayActorError, ray.exceptions.GetTimeoutError):
                out.append({})
        return out

    def stop(self) -> FleetStatus | None:
        """Stop every actor's loop (final statuses returned when they answer), then kill the processes."""
        actors = self.rollouts + self.rewards + ([self.refresh] if self.refresh is not None else [])
        finals = []
        for ref in [a.stop.remote() for a in actors]:
            try:
                finals.append(ray.get(ref, timeout=60.0))
            except (RayActorError, ray.exceptions.GetTimeoutError, ray.exceptions.RayTaskError):
                finals.append({"name": "?", "error": "did not stop cleanly"})
        for actor in actors:
            ray.kill(actor, no_restart=True)
        self.rollouts, self.rewards, self.refresh = [], [], None
        rollouts = [s for s in finals if str(s.get("name", "")).startswith("rollout-")]
        rewards = [s for s in finals if str(s.get("name", "")).startswith("reward-")]
        return FleetStatus(rollouts, rewards, None, 0)

    @staticmethod
    def _get(ref, name: str, *, timeout_s: float):
        try:
            return ray.get(ref, timeout=timeout_s)
        except ray.exceptions.RayTaskError as exc:
            raise FleetError(f"{name} failed to start: {exc.cause if exc.cause is not None else exc}") from exc
        except RayActorError as exc:
            raise FleetError(f"{name} died while starting: {exc}") from exc
        except ray.exceptions.GetTimeoutError as exc:
            raise FleetError(f"{name} did not start within {timeout_s:.0f}s") from exc
