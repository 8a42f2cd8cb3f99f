"""The validated TrainConfig -> the frozen specs the actors, the learner and the controller take."""

import dataclasses
import sys
from pathlib import Path

from rollspec.actors.config import (
    ControllerSpec,
    DraftRefreshSpec,
    FeedSpec,
    ProcessSpec,
    QueueSpec,
    RewardSpec,
    RolloutSpec,
)
from rollspec.actors.learner_config import LearnerConfig
from rollspec.actors.rollout_loop import SamplingDefaults
from rollspec.engine.config import EngineConfig
from rollspec.engine.loader import read_config
from rollspec.engine.model_config import ModelConfig
from rollspec.launch.config import TrainConfig
from rollspec.models.config import RefreshConfig
from rollspec.rl.config import AdvantageConfig, PolicyLossConfig
from rollspec.rl.grpo_step import GrpoLossConfig
from rollspec.rl.vocab import EOS_ID
from rollspec.scheduler import AdmissionConfig
from rollspec.transport import FaultPlan


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ModelPaths:
    """Model directories with zoo references resolved; draft is None when the drafter needs none."""

    policy: Path
    draft: Path | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunSpecs:
    """Everything the run's components are built from."""

    rollout: RolloutSpec
    reward: RewardSpec
    refresh: DraftRefreshSpec | None
    feed: FeedSpec
    learner: LearnerConfig
    advantage: AdvantageConfig
    controller: ControllerSpec
    vocab_size: int


def admission_config(config: TrainConfig) -> AdmissionConfig:
    algo = config.algorithm
    return AdmissionConfig(max_staleness=algo.max_staleness, prompts_per_step=algo.prompts_per_step,
                           group_size=algo.group_size)


def fault_plan(config: TrainConfig) -> FaultPlan:
    """The run's injected message faults (chaos section), one plan every endpoint derives its stream from."""
    chaos = config.chaos
    return FaultPlan(seed=chaos.seed, drop=chaos.drop, duplicate=chaos.duplicate, reorder=chaos.reorder,
                     delay=chaos.delay, max_delay_s=chaos.max_delay_s, corrupt=chaos.corrupt)


def build_specs(config: TrainConfig, paths: ModelPaths) -> RunSpecs:
    """Specs for every component of the run described by `config` with models at `paths`."""
    algo, rollout, learner = config.algorithm, config.rollout, config.learner
    faults = fault_plan(config)
    policy_config = ModelConfig.from_hf_dict(read_config(paths.policy))
    stop = tuple(policy_config.eos_token_ids) or (EOS_ID,)
    engine = EngineConfig(max_batch_size=rollout.max_batch_size, max_seq_len=rollout.max_seq_len,
                          k_max=max(rollout.k, 1), seed=config.run.seed)
    sampling = SamplingDefaults(temperature=algo.temperature, top_p=algo.top_p, max_new_tokens=algo.max_new_tokens,
                                stop_token_ids=stop)
    draft_path = str(paths.draft) if paths.draft is not None else None
    rollout_spec = RolloutSpec(policy_path=str(paths.policy), drafter=rollout.drafter, draft_path=draft_path,
                               engine=engine, depth=rollout.depth, k=rollout.k if rollout.drafter != "none" else 0,
                               sampling=sampling, group_size=algo.group_size, profile_repeats=rollout.profile_repeats,
                               process=ProcessSpec(num_threads=rollout.num_threads), backend=rollout.backend,
                               faults=faults, slowdown=config.chaos.slowdown)
    reward_spec = RewardSpec(function=config.reward.function, timeout_s=config.reward.timeout_s,
                             python_path=tuple(p for p in sys.path if p), faults=faults)
    refresh_spec = None
    if config.runs_draft_refresh:
        refresh = config.draft_refresh
        distill = RefreshConfig(steps=refresh.steps, batch_size=refresh.batch_size, lr=refresh.lr,
                                max_seconds=refresh.max_seconds, buffer_sequences=refresh.buffer_sequences,
                                min_sequences=max(2, min(2 * refresh.batch_size, refresh.buffer_sequences)), seed=config.run.seed)
        refresh_spec = DraftRefreshSpec(drafter=rollout.drafter, draft_path=draft_path, policy_path=str(paths.policy),
                                        every_policy_versions=refresh.every_policy_versions, distill=distill,
                                        faults=faults)
    admission = admission_config(config)
    loss = GrpoLossConfig(policy_loss=PolicyLossConfig(clip_eps_low=algo.clip_eps_low, clip_eps_high=algo.clip_eps_high,
                                                       tis_cap=algo.tis_cap, kl_coef=algo.kl_coef),
                          temperature=algo.temperature, decoupled=algo.decoupled)
    learner_config = LearnerConfig(zero_stage=learner.zero_stage, lr=learner.lr, weight_decay=learner.weight_decay,
                                   grad_clip=learner.grad_clip, micro_batch_size=learner.micro_batch_size,
                                   dtype=learner.dtype, num_ranks=learner.num_ranks,
                                   cpus_per_rank=learner.cpus_per_rank, seed=config.run.seed, loss=loss,
                                   publisher_faults=faults)
    data = config.data
    controller = ControllerSpec(
        steps=algo.steps, admission=admission, task_weights=tuple(sorted(data.tasks.items())), data_seed=data.seed,
        difficulty=data.difficulty, eval_fraction=data.eval_fraction, rl_fraction=data.rl_fraction,
        prompt_split=data.prompt_split, dataset_size=data.dataset_size, sample_seed=config.run.seed,
        checkpoint_every=config.checkpoint.every_steps, keep_checkpoints=config.checkpoint.keep_last,
        queues=QueueSpec(capacity=config.transport.queue_capacity, lease_s=config.transport.lease_s,
                         max_attempts=config.transport.max_attempts))
    return RunSpecs(rollout=rollout_spec, reward=reward_spec, refresh=refresh_spec,
                    feed=FeedSpec(admission=admission, vocab_size=policy_config.vocab_size,
                                  drop_truncated=algo.drop_truncated, faults=faults),
                    learner=learner_config, advantage=AdvantageConfig(scale_by_std=algo.scale_by_std),
                    controller=controller, vocab_size=policy_config.vocab_size)
