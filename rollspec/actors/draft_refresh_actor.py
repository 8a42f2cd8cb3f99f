"""DraftRefreshActor: holds its own copy of the policy and the drafter, follows policy versions, distills
the drafter on recent trajectories and publishes draft versions (see draft_refresh_loop).
"""

import os
from pathlib import Path

import torch

from rollspec.actors.config import DRAFT_SAMPLES, DraftRefreshSpec
from rollspec.actors.draft_checkpoint import (
    DraftCheckpointError,
    SavedDraft,
    load_draft,
    load_trainer,
    save_draft,
    weights_digest,
)
from rollspec.actors.draft_refresh_loop import DraftRefreshLoop
from rollspec.actors.loop_thread import LoopThread
from rollspec.actors.metric_samples import endpoint_faults, endpoint_rejections, refresh_samples
from rollspec.actors.process_heap import freeze_startup_heap
from rollspec.actors.ray_metrics import PeriodicExport, RaySink
from rollspec.engine.loader import EXTRA_PREFIXES, read_config, read_safetensors
from rollspec.engine.model_config import ModelConfig
from rollspec.models.distiller_state import DistillerStateError
from rollspec.models.draft_distiller import DRAFTER_KINDS, DraftDistiller
from rollspec.transport import NO_SECURITY, SecurityConfig, WeightPublisher, WeightSubscriber, ZmqConsumer


def initial_draft_weights(spec: DraftRefreshSpec) -> dict[str, torch.Tensor]:
    """The drafter's weights as its `update()` takes them: HF names of the draft model, the EAGLE head's
    on-disk names, or the `mtp.*` tensors stored in the policy checkpoint."""
    if spec.drafter == "mtp":
        tensors = read_safetensors(Path(spec.policy_path))
        return {name: t for name, t in tensors.items() if name.startswith(EXTRA_PREFIXES)}
    if spec.drafter in ("draft_model", "eagle") and spec.draft_path is not None:
        return read_safetensors(Path(spec.draft_path))
    raise ValueError(f"drafter {spec.drafter!r} has no weights to refresh; expected one of {DRAFTER_KINDS}")


def build_distiller(spec: DraftRefreshSpec, draft_weights: dict[str, torch.Tensor]) -> DraftDistiller:
    """The distiller, starting from the policy on disk (version 0 until the learner's versions arrive)."""
    policy_config = ModelConfig.from_hf_dict(read_config(spec.policy_path))
    draft_config = ModelConfig.from_hf_dict(read_config(spec.draft_path)) if spec.drafter != "mtp" else None
    return DraftDistiller(spec.drafter, policy_config=policy_config,
                          policy_weights=read_safetensors(Path(spec.policy_path)), draft_weights=draft_weights,
                          config=spec.distill, draft_config=draft_config)


def restore_trainer(distiller: DraftDistiller, directory: Path) -> dict | None:
    """Continue `distiller` from a checkpoint's saved trainer state, if it has one; returns what was restored
    (optimizer steps behind the moments, trajectories buffered) for status(), None if nothing was saved."""
    loaded = load_trainer(directory)
    if loaded is None:
        return None
    trainer, buffer = loaded
    try:
        distiller.restore_state(trainer, buffer)
    except DistillerStateError as exc:
        raise DraftCheckpointError(f"{directory}: saved trainer state does not fit this drafter ({exc})") from None
    return {"optimizer_steps": 0 if trainer is None else trainer.optimizer_steps, "buffered": len(buffer)}


class DraftRefreshActor:
    """Publishes draft versions on its own WeightPublisher (`address()`), one per completed refresh.

    Versions only go up: it starts at the checkpointed `draft_version` (0 on a fresh run), with the
    checkpoint's draft weights when `restore_dir` holds them. Training runs on this actor's own thread
    and CPUs; rollouts swap to a version only once it is published.
    """

    def __init__(self, spec: DraftRefreshSpec, *, broker_address: str, policy_address: str, draft_version: int,
                 policy_version: int, restore_dir: str | None = None, bind_address: str = "tcp://127.0.0.1:*",
                 security: SecurityConfig = NO_SECURITY, run: str = ""):
        """`restore_dir`: a verified checkpoint's draft directory (draft_checkpoint.py) to start from, its
        version replacing `draft_version`; `security`: the run's "draft_refresh" keys (serves draft
        versions: CURVE server + signing); `run` tags its live metrics."""
        torch.set_num_threads(spec.process.num_threads)
        self._drafter = spec.drafter
        if restore_dir is not None:
            saved, draft_weights = load_draft(Path(restore_dir), spec.drafter)
            draft_version = saved.draft_version
        else:
            draft_weights = initial_draft_weights(spec)
        refresher = build_distiller(spec, draft_weights)
        trainer = restore_trainer(refresher, Path(restore_dir)) if restore_dir is not None else None
        self._initial = {"draft_version": draft_version, "sha256": weights_digest(draft_weights),
                         "restored_from": restore_dir, "trainer_restored": trainer}
        faults = spec.faults.for_endpoint
        self._publisher = WeightPublisher(bind_address=bind_address, security=security,
                                          faults=faults("draft-refresh/draft"))
        self._policy = WeightSubscriber(policy_address, security=security, faults=faults("draft-refresh/policy"))
        self._samples = ZmqConsumer(broker_address, DRAFT_SAMPLES, security=security,
                                    faults=faults(f"draft-refresh/{DRAFT_SAMPLES}"))
        self._loop = DraftRefreshLoop(draft_weights=draft_weights, draft_version=draft_version,
                                      policy_version=policy_version, policy=self._policy, publisher=self._publisher,
                                      samples=self._samples, every_policy_versions=spec.every_policy_versions,
                                      refresher=refresher)
        self._export = PeriodicExport(RaySink(run), self.status, refresh_samples)
        freeze_startup_heap()
        self._thread = LoopThread(self._step, "draft-refresh-loop")

    def _step(self) -> None:
        self._loop.run_once()
        self._export.tick()

    def address(self) -> str:
        """Where rollout actors subscribe to draft versions."""
        return self._publisher.address

    def save_draft(self, directory: str) -> dict:
        """Write the latest published draft version into `directory` (a checkpoint's draft directory);
        returns its description (drafter, draft_version, policy_version)."""
        version, policy_version, weights, trainer = self._loop.published
        saved = SavedDraft(drafter=self._drafter, draft_version=version, policy_version=policy_version)
        save_draft(Path(directory), saved, weights, trainer, self._loop.buffered())
        return {"drafter": saved.drafter, "draft_version": version, "policy_version": policy_version}

    def status(self) -> dict:
        """Versions (policy seen, draft published), samples consumed, refresh records, the draft it started
        from (version, weights digest, checkpoint directory or None) and any loop failure."""
        rejected = endpoint_rejections({DRAFT_SAMPLES: self._samples, "policy_weights": self._policy})
        return {**self._loop.stats.as_dict(), "error": self._thread.error, "name": "draft-refresh", "pid": os.getpid(),
                "initial_draft": self._initial, "rejected": rejected,
                "faults": endpoint_faults((self._samples, self._policy, self._publisher))}

    def stop(self) -> dict:
        """Stop the loop, close the sockets and return status()."""
        self._thread.stop(timeout_s=120.0)
        for endpoint in (self._samples, self._policy, self._publisher):
            endpoint.close()
        return self.status()
