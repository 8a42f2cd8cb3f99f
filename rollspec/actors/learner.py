"""LearnerActor: one DeepSpeed ZeRO rank of the GRPO learner. A plain class; `LearnerGroup` runs R
of them as Ray actors forming one torch.distributed group.

Every method except `parameter_numel`, `publisher_address` and `state` is a collective: all ranks
must call it, in the same order, with their own arguments (the group does this). Rank 0 alone owns the
weight publisher.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from rollspec.actors.deepspeed_config import deepspeed_config
from rollspec.actors.learner_config import LearnerConfig
from rollspec.actors.learner_env import rank_environment, rendezvous_file
from rollspec.actors.learner_weights import gather_native_state, native_state_to_hf
from rollspec.actors.process_heap import freeze_startup_heap
from rollspec.engine.loader import load_model
from rollspec.rl.grpo_step import PolicyLogits, grpo_loss
from rollspec.rl.trajectory_batch import TrajectoryBatch
from rollspec.transport import NO_SECURITY, SecurityConfig, WeightPublisher

CHECKPOINT_META = "rollspec_learner.json"
SUMMED_STATS = ("loss", "pg_loss")  # each micro-batch's share of the global mean: summed, then /ranks
TOKEN_MEAN_STATS = ("clip_fraction", "truncated_fraction", "ratio_mean", "is_weight_mean", "behaviour_kl", "kl",
                    "entropy")  # masked means per micro-batch: weighted by its token count


class LearnerInputError(ValueError):
    """A call with arguments the learner cannot use (no micro-batches, a version that goes back)."""


class LearnerCheckpointError(ValueError):
    """A checkpoint that is missing or was written by a learner of a different shape."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LearnerState:
    """What a checkpoint restores besides DeepSpeed's own state: optimizer steps taken, the last
    published policy version, and the shape of the learner that wrote it."""

    step: int
    policy_version: int
    zero_stage: int
    num_ranks: int
    dtype: str


class LearnerActor:
    """One rank: a Decoder under `deepspeed.initialize` (ZeRO stage from config, torch AdamW),
    trained with the GRPO loss of `rl.grpo_step`, one optimizer step per `train_step`.

    CPU only (gloo, DS_ACCELERATOR=cpu). A GPU learner additionally needs num_gpus per rank in the
    group's placement, NCCL, and the model and batches moved to the rank's device.
    """

    def __init__(self, rank: int, world_size: int, model_dir: str, config: LearnerConfig, *, master_port: int,
                 rendezvous_id: str | None = None, publisher_security: SecurityConfig = NO_SECURITY):
        """Records the rank and sets its environment; the heavy work happens in `setup`. Ranks
        given the same `rendezvous_id` meet through a FileStore (nothing listens off loopback; see
        `learner_env.rendezvous_file`); without one, through env:// on 127.0.0.1:master_port, whose
        TCPStore listens on every interface. `publisher_security` (the run's "learner" keys) secures
        rank 0's weight publisher: CURVE and signed manifests."""
        self.rank, self.world_size, self.model_dir, self.config = rank, world_size, model_dir, config
        self.publisher_security = publisher_security
        self.store_file = rendezvous_file(rendezvous_id) if rendezvous_id else None
        self.init_method = f"file://{self.store_file}" if self.store_file else "env://"
        os.environ.update(rank_environment(rank=rank, world_size=world_size, master_port=master_port,
                                           extensions_dir=config.torch_extensions_dir, use_cuda=False))
        torch.set_num_threads(config.num_threads)
        self.step = 0
        self.policy_version = 0
        self.engine = None
        self.publisher: WeightPublisher | None = None

    def setup(self) -> dict:
        """Join the process group, load the model, build the DeepSpeed engine; rank 0 opens the
        weight publisher. Returns {"publisher_address", "parameter_numel"}."""
        # Imported here, after __init__ set DS_ACCELERATOR and TORCH_EXTENSIONS_DIR: deepspeed picks
        # its accelerator at import time.
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False, verbose=False,
                                   init_method=self.init_method, rank=self.rank, world_size=self.world_size,
                                   timeout=timedelta(seconds=self.config.call_timeout_s))
        torch.manual_seed(self.config.seed)
        loaded = load_model(self.model_dir)
        self.model_config = loaded.config
        module = PolicyLogits(loaded.model.train().requires_grad_(True))  # the loader hands out frozen models
        optimizer = torch.optim.AdamW(module.parameters(), lr=self.config.lr, betas=self.config.betas,
                                      eps=self.config.eps, weight_decay=self.config.weight_decay)
        self.engine, self.optimizer, _, _ = deepspeed.initialize(model=module, optimizer=optimizer,
                                                                 config=deepspeed_config(self.config))
        self.ref_model = None
        if self.config.uses_reference_model:
            self.ref_model = PolicyLogits(load_model(self.model_dir).model)
        if self.rank == 0:
            self.publisher = WeightPublisher(security=self.publisher_security,
                                             faults=self.config.publisher_faults.for_endpoint("learner/policy"))
        freeze_startup_heap()
        return {"publisher_address": self.publisher_address(), "parameter_numel": self.parameter_numel()}

    def train_step(self, micro_batches: list[TrajectoryBatch]) -> dict[str, float]:
        """Accumulate gradients over this rank's micro-batches, then one optimizer step on all ranks.

        Every rank must pass the same number of micro-batches (`TrajectoryBatch.split` guarantees
        it). Returns stats of the whole global batch (identical on every rank): loss and pg_loss as
        the global token mean, token-weighted means of the policy-loss stats, num_tokens, grad_norm
        (before clipping), lr, step and step_time_s.
        """
        if not micro_batches:
            raise LearnerInputError(f"rank {self.rank}: train_step needs at least one micro-batch, got 0")
        start = time.perf_counter()
        self.engine.train()
        # Same keys on every rank (they depend only on config), so the stacked sums line up.
        token_mean_keys = [k for k in TOKEN_MEAN_STATS if self._has_stat(k)]
        summed = torch.zeros(len(SUMMED_STATS) + len(token_mean_keys) + 1, dtype=torch.float64)
        for index, micro in enumerate(micro_batches):
            # Reduce and step only after the last micro-batch (gradient_accumulation_steps is 1 in
            # the DeepSpeed config; the learner owns the boundary).
            self.engine.set_gradient_accumulation_boundary(index == len(micro_batches) - 1)
            loss, stats = grpo_loss(self.engine, micro, self.config.loss, self.ref_model)
            self.engine.backward(loss)
            tokens = stats["num_tokens"].double()
            summed += torch.stack([stats[k].double() for k in SUMMED_STATS]
                                  + [stats[k].double() * tokens for k in token_mean_keys] + [tokens])
        self.engine.step()
        self.step += 1
        dist.all_reduce(summed)  # the step's one extra sync: global stats on every rank
        values = summed.tolist()
        num_tokens = values[-1]
        result = {k: values[i] / self.world_size for i, k in enumerate(SUMMED_STATS)}
        for i, key in enumerate(token_mean_keys, start=len(SUMMED_STATS)):
            result[key] = values[i] / max(num_tokens, 1.0)
        grad_norm = self.engine.get_global_grad_norm()
        result.update(num_tokens=num_tokens, grad_norm=float(grad_norm) if grad_norm is not None else float("nan"),
                      lr=float(self.optimizer.param_groups[0]["lr"]), step=float(self.step),
                      step_time_s=time.perf_counter() - start)
        return result

    def full_weights(self) -> dict[str, torch.Tensor] | None:
        """The full policy weights under Hugging Face names (contiguous CPU copies) on rank 0, None
        on the others. A collective under ZeRO-3."""
        state = gather_native_state(self.engine, self.engine.module, zero_stage=self.config.zero_stage, rank=self.rank)
        if state is None:
            return None
        return {name: tensor.clone() for name, tensor in native_state_to_hf(state, self.model_config).items()}

    def publish(self, version: int) -> dict[str, float]:
        """Gather the full weights and, on rank 0, publish them as `version` through the weight
        broadcast. Versions only go up: a version <= the last published one (or the restored one)
        raises LearnerInputError on every rank before any collective starts."""
        if not (isinstance(version, int) and version > self.policy_version):
            raise LearnerInputError(f"publish version {version!r} must be an int > the current policy version "
                                    f"{self.policy_version}")
        start = time.perf_counter()
        state = gather_native_state(self.engine, self.engine.module, zero_stage=self.config.zero_stage, rank=self.rank)
        gathered = time.perf_counter()
        num_bytes = 0
        if state is not None:
            weights = native_state_to_hf(state, self.model_config)
            num_bytes = sum(t.numel() * t.element_size() for t in weights.values())
            self.publisher.publish(version, weights)  # snapshots into its own buffer before returning
        self.policy_version = version
        return {"version": float(version), "num_bytes": float(num_bytes), "gather_s": gathered - start,
                "publish_s": time.perf_counter() - gathered}

    def publisher_address(self) -> str | None:
        """The weight publisher's ZMQ address on rank 0 (tcp://127.0.0.1:port), None elsewhere."""
        return self.publisher.address if self.publisher is not None else None

    def parameter_numel(self) -> dict[str, int]:
        """Parameter elements of this rank, shared parameters counted once: "full", the model's
        total; "local", its partition (its ZeRO-3 shard, or everything below stage 3); "resident",
        elements of whole parameters held between steps (everything below stage 3; under ZeRO-3
        only parameters it keeps unpartitioned, which with the learner's config are none)."""
        local = full = resident = 0
        seen = set()
        for param in self.engine.module.parameters():
            if id(param) in seen:
                continue
            seen.add(id(param))
            sharded = hasattr(param, "ds_tensor")
            local += param.ds_tensor.numel() if sharded else param.numel()
            full += param.ds_numel if sharded else param.numel()
            resident += param.data.numel()  # a partitioned ZeRO-3 parameter's data is empty outside a gather
        return {"local": local, "full": full, "resident": resident}

    def save_checkpoint(self, directory: str, tag: str, client_state: dict | None = None) -> str:
        """DeepSpeed checkpoint (weights, optimizer and its partitions, engine counters) under
        `directory/tag`, plus `rollspec_learner.json` with the LearnerState; `client_state` (small,
        picklable) is stored inside and handed back by `load_checkpoint`. Returns the tag's path."""
        meta = self._state()
        self.engine.save_checkpoint(directory, tag=tag, client_state={"controller": client_state or {},
                                                                      "learner": dataclasses.asdict(meta)})
        path = Path(directory) / tag
        if self.rank == 0:
            (path / CHECKPOINT_META).write_text(json.dumps(dataclasses.asdict(meta), indent=2) + "\n")
        dist.barrier()  # the tag is complete only when every rank has written its partitions
        return str(path)

    def load_checkpoint(self, directory: str, tag: str) -> dict:
        """Restore weights, optimizer state, step and policy version from `directory/tag`; returns
        the client_state given to `save_checkpoint`. Checked before DeepSpeed reads anything: the
        tag must exist and have been written with the same ZeRO stage, rank count and dtype."""
        meta_file = Path(directory) / tag / CHECKPOINT_META
        if not meta_file.is_file():
            raise LearnerCheckpointError(f"no learner checkpoint {tag!r} in {directory!r} (missing {meta_file})")
        saved = LearnerState(**json.loads(meta_file.read_text()))
        mine = self._state()
        shape = ("zero_stage", "num_ranks", "dtype")
        if any(getattr(saved, k) != getattr(mine, k) for k in shape):
            raise LearnerCheckpointError(
                f"checkpoint {meta_file} was written by a learner with "
                f"{ {k: getattr(saved, k) for k in shape} }, this one has { {k: getattr(mine, k) for k in shape} }")
        path, client_state = self.engine.load_checkpoint(directory, tag=tag, load_optimizer_states=True,
                                                         load_lr_scheduler_states=True)
        if path is None:
            raise LearnerCheckpointError(f"DeepSpeed found no checkpoint {tag!r} in {directory!r}")
        self.step, self.policy_version = saved.step, saved.policy_version
        return client_state["controller"]

    def state(self) -> LearnerState:
        """Steps taken, last published version and the learner's shape."""
        return self._state()

    def close(self) -> None:
        """Stop the weight publisher, leave the process group, and (rank 0) remove the rendezvous
        file: ranks end by ray.kill, so torch's own clean-up at exit never runs. Unlinking is safe
        while other ranks still have it open."""
        if self.rank == 0 and self.store_file is not None:
            self.store_file.unlink(missing_ok=True)  # first: the slow steps below may be cut short by the kill
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None
        if dist.is_initialized():
            dist.destroy_process_group()

    def _has_stat(self, key: str) -> bool:
        if key == "kl":
            return self.ref_model is not None
        if key == "entropy":
            return self.config.loss.compute_entropy
        return True

    def _state(self) -> LearnerState:
        return LearnerState(step=self.step, policy_version=self.policy_version, zero_stage=self.config.zero_stage,
                            num_ranks=self.world_size, dtype=self.config.dtype)
