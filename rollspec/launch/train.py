"""`rollspec train`: config -> models -> Ray -> broker, learner group, actors -> controller loop -> summary.

    summary = train(load_config("configs/tiny.yaml", ["algorithm.steps=5"]))

Start order follows the data the actors need at construction: the broker's address (everyone),
the learner's weight publisher (rollouts, draft refresh), the draft publisher (rollouts). Reward
actors start first, so their start-up overlaps the learner's DeepSpeed set-up.
"""

import math
import time
from collections.abc import Callable
from typing import Any

from rollspec.launch.config import ConfigError, TrainConfig
from rollspec.launch.keys import describe, role_security
from rollspec.launch.model_paths import resolve_model_paths
from rollspec.launch.progress import StepProgress
from rollspec.launch.ray_session import cluster_address, ray_session
from rollspec.launch.resources import check_cpus
from rollspec.launch.run_dir import RunDir
from rollspec.launch.specs import RunSpecs, build_specs
from rollspec.launch.stop_signals import graceful_stop


class RestoreMismatchError(RuntimeError):
    """A restored learner does not match the checkpoint's controller state."""


def check_reward_function(config: TrainConfig) -> None:
    """Import a user reward function in the driver too, so a bad path fails before anything starts."""
    if config.reward.function != "builtin":
        from rollspec.actors.reward_fn import RewardFunctionError, load_reward_function

        try:
            load_reward_function(config.reward.function)
        except RewardFunctionError as exc:
            raise ConfigError(str(exc)) from exc


def train(config: TrainConfig, *, resume: bool = False, progress: StepProgress | None = None,
          on_started: Callable[[Any, Any, Any], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the training run `config` describes; returns its summary (also in summary.json).
    `on_started(fleet, learner, broker)` is called once every actor is up (chaos/ injects faults there)."""
    check_reward_function(config)
    if cluster_address(config.ray) is None:
        check_cpus(config, config.ray.num_cpus, "the local Ray (ray.num_cpus)")
    paths = resolve_model_paths(config)
    run_dir = RunDir.open(config, resume=resume)
    run_dir.write_config(config, {"policy": str(paths.policy), "draft": str(paths.draft) if paths.draft else None})
    specs = build_specs(config, paths)
    progress = progress or StepProgress(config.algorithm.steps, enabled=config.run.progress)
    with ray_session(config.ray, config.run.name) as where:
        import ray

        check_cpus(config, ray.cluster_resources().get("CPU", 0.0), where)
        progress.log(f"run {run_dir.path} on {where}")
        return _run(config, specs, str(paths.policy), run_dir, resume, progress, on_started)


def _run(config: TrainConfig, specs: RunSpecs, policy_dir: str, run_dir: RunDir, resume: bool,
         progress: StepProgress, on_started: Callable[[Any, Any, Any], None] | None) -> dict[str, Any]:
    from rollspec.actors.checkpoints import CheckpointStore
    from rollspec.actors.config import DRAFT_SAMPLES, PROMPTS, SCORED, TRAJECTORIES
    from rollspec.actors.controller import Controller
    from rollspec.actors.controller_state import ControllerState
    from rollspec.actors.feeding_learner import FeedingLearnerGroup
    from rollspec.actors.fleet import Fleet
    from rollspec.actors.prompt_source import PromptSource
    from rollspec.actors.ray_metrics import StepGauges
    from rollspec.transport import Broker, QueueConfig

    start = time.monotonic()
    queues = specs.controller.queues
    security = role_security(config.security)  # this run's keys: to each actor as a Ray argument only
    progress.log(describe(config.security))
    broker = Broker([QueueConfig(name=name, capacity=queues.capacity, lease_s=queues.lease_s,
                                 max_attempts=queues.max_attempts, dedup_window=max(1 << 18, 8 * queues.capacity))
                     for name in (PROMPTS, TRAJECTORIES, SCORED, DRAFT_SAMPLES)], security=security["controller"],
                    faults=specs.rollout.faults.for_endpoint("broker"))
    store = CheckpointStore(run_dir.checkpoints, keep_last=specs.controller.keep_checkpoints)
    state, checkpoint_step = ControllerState(), None
    if resume:
        checkpoint_step, raw = store.latest()
        state = ControllerState.from_json(raw)
    fleet, learner = Fleet(run=config.run.name), None
    try:
        fleet.start_rewards(specs.reward, count=config.reward.num_actors, num_cpus=config.reward.cpus_per_actor,
                            max_restarts=config.reward.max_restarts, broker_address=broker.address,
                            security=security["reward"])
        learner = FeedingLearnerGroup(policy_dir, specs.learner, security=security["learner"])
        learner_s = time.monotonic() - start
        learner.attach_feed(specs.feed, broker.address, specs.advantage, config.run.name)
        if checkpoint_step is not None:
            _restore(learner, store, checkpoint_step, state, progress)
        draft_address, restore_dir = None, None
        if checkpoint_step is not None:  # the refreshed draft of the run being resumed, with or without refresh now
            restore_dir = _draft_to_restore(store, checkpoint_step, specs.rollout.drafter, state, progress)
        if specs.refresh is not None:
            draft_address = fleet.start_refresh(specs.refresh, num_cpus=config.draft_refresh.cpus,
                                                broker_address=broker.address,
                                                policy_address=learner.publisher_address,
                                                draft_version=state.draft_version, policy_version=state.policy_version,
                                                restore_dir=restore_dir, security=security["draft_refresh"])
        fleet.start_rollouts(specs.rollout, count=config.rollout.num_actors, num_cpus=config.rollout.cpus_per_actor,
                             max_restarts=config.rollout.max_restarts, broker_address=broker.address,
                             policy_address=learner.publisher_address, draft_address=draft_address,
                             min_policy_version=state.policy_version,
                             initial_draft_dir=restore_dir if specs.refresh is None else None, security=security["rollout"],
                             num_slow=config.chaos.slow_rollouts)
        fleet.wait_ready()
        if on_started is not None:
            on_started(fleet, learner, broker)
        startup_s = time.monotonic() - start
        progress.log(f"started in {startup_s:.1f}s (learner ready at {learner_s:.1f}s): "
                     f"{config.rollout.num_actors} rollout, {config.reward.num_actors} "
                     f"reward, {config.learner.num_ranks} learner rank(s), draft refresh "
                     f"{'on' if specs.refresh else 'off'}; from step {state.step}")
        source = PromptSource(specs.controller.prompt_mixture(), group_size=specs.controller.group_size,
                              seed=specs.controller.sample_seed,
                              dataset_size=specs.controller.dataset_size)

        heldout = _heldout_evaluator(config, policy_dir, progress)
        gauges = StepGauges(config.run.name)

        def on_step(metrics: dict) -> None:
            metrics["actor_restarts"] = sum(fleet.restarts.values())
            run_dir.append_metrics(metrics)
            gauges.record(metrics)
            progress.update(metrics)

        checkpoints = store if config.checkpoint.enabled else None
        with graceful_stop() as stop, progress:  # its notices bypass the progress console (see write_stderr)
            controller = Controller(specs.controller, state=state, broker=broker, prompts=broker.sender(PROMPTS),
                                    source=source, learner=learner, fleet=fleet, checkpoints=checkpoints, on_step=on_step,
                                    on_poll=lambda status: _record_fleet(gauges, broker, fleet, state),
                                    stop_requested=stop.requested)
            controller.run()
        summary = _summary(controller, fleet.poll(), fleet.profiles(), learner.feed_stats(), startup_s,
                           time.monotonic() - start, run_dir)
        if controller.stopped_early:
            summary["stopped"] = _stop_record(stop.signal_name, state, checkpoints)
            progress.log(summary["stopped"]["message"])
        if heldout is not None and not controller.stopped_early:  # a stop should end soon; --resume scores it
            summary["heldout"] = {"initial": heldout.initial, "final": heldout.score_weights(learner.full_weights())}
        summary["refused_peers"] = broker.stats(PROMPTS).refused  # peers refused at the CURVE handshake, by kind
        summary["refresh_lost"] = fleet.num_refresh_lost
        summary["actor_restarts"] = dict(fleet.restarts)
    finally:
        fleet.stop()
        if learner is not None:
            learner.shutdown()
        broker.close()
    run_dir.write_final(state.ledger.to_json(), summary)
    return summary


def _heldout_evaluator(config: TrainConfig, policy_dir: str, progress: StepProgress):
    """Scores the starting weights on the held-out prompts now (None if data.heldout_prompts is 0)."""
    if config.data.heldout_prompts == 0:
        return None
    from rollspec.launch.heldout import HeldoutEvaluator, HeldoutSpec

    spec = HeldoutSpec(task_weights=dict(config.data.tasks), data_seed=config.data.seed,
                       difficulty=config.data.difficulty, eval_fraction=config.data.eval_fraction,
                       rl_fraction=config.data.rl_fraction,
                       num_prompts=config.data.heldout_prompts, samples_per_prompt=config.data.heldout_samples,
                       temperature=config.algorithm.temperature, max_new_tokens=config.algorithm.max_new_tokens,
                       max_seq_len=config.rollout.max_seq_len)
    evaluator = HeldoutEvaluator(policy_dir, spec)
    progress.log(f"held-out reward of the starting policy: {evaluator.initial['reward_mean']:.3f} "
                 f"({evaluator.initial['num_samples']} samples)")
    return evaluator


def _record_fleet(gauges, broker, fleet, state) -> None:
    """Live metrics between steps: queues, restarts, dropped groups, the broker's rejections."""
    from rollspec.actors.config import DRAFT_SAMPLES, PROMPTS, SCORED, TRAJECTORIES

    if gauges.is_due():
        queues = {q: broker.stats(q).as_dict() for q in (PROMPTS, TRAJECTORIES, SCORED, DRAFT_SAMPLES)}
        dropped = {k.split("/", 1)[1]: n for k, n in state.counters.items() if k.startswith("dropped_groups/")}
        gauges.record_fleet(queues, dict(fleet.restarts), dropped, queues[PROMPTS]["rejected"])


def _restore(learner, store, step: int, state, progress: StepProgress) -> None:
    """Load the learner's part of checkpoint `step`, check it matches the controller's, republish it."""
    from rollspec.actors.checkpoints import LEARNER_TAG

    learner.load_checkpoint(store.learner_dir(step), LEARNER_TAG)
    restored = learner.state()
    if (restored.step, restored.policy_version) != (state.step, state.policy_version):
        raise RestoreMismatchError(f"checkpoint step {step}: learner has step {restored.step} / version "
                                   f"{restored.policy_version}, controller state says {state.step} / "
                                   f"{state.policy_version}")
    fingerprint = learner.fingerprint()
    saved = state.learner_fingerprint
    if saved and any(not math.isclose(fingerprint[k], saved[k], rel_tol=1e-9, abs_tol=1e-9) for k in saved):
        raise RestoreMismatchError(f"checkpoint step {step}: restored learner fingerprint {fingerprint} differs "
                                   f"from the saved {saved}")
    if state.policy_version > 0:
        learner.republish()
    state.restores.append({"checkpoint": str(store.step_dir(step)), "step": state.step,
                           "policy_version": state.policy_version, "draft_version": state.draft_version,
                           "fingerprint": fingerprint, "at": time.time()})
    progress.log(f"resumed from {store.step_dir(step)} (step {state.step}, policy v{state.policy_version}, "
                 f"draft d{state.draft_version}, {len(state.ledger.outstanding())} groups to re-issue)")


def _draft_to_restore(store, step: int, drafter: str, state, progress: StepProgress) -> str | None:
    """The checkpoint's draft directory if it holds a draft of the drafter this run uses (its version
    becomes the state's): the draft-refresh actor starts from it, or, with refresh off now, the rollout
    actors do. None otherwise (refresh was off, an older checkpoint, another drafter): the drafter on
    disk then serves, lossless but less fresh."""
    from rollspec.actors.draft_checkpoint import read_saved_draft

    directory = store.draft_dir(step)
    saved = read_saved_draft(directory)
    restored = saved is not None and saved.drafter == drafter
    if restored:
        state.draft_version = max(state.draft_version, saved.draft_version)
    if state.restores:
        state.restores[-1]["draft_restored"] = restored
    if saved is not None and not restored:
        progress.log(f"checkpoint {store.step_dir(step).name} holds a {saved.drafter} draft, this run drafts with "
                     f"{drafter}: starting from the drafter on disk")
    return str(directory) if restored else None


def _stop_record(signal_name: str | None, state, store) -> dict[str, Any]:
    """What a stopped run left: the step reached, its checkpoint (if any) and the groups --resume re-issues."""
    complete = store.complete_steps() if store is not None else []
    checkpoint = str(store.step_dir(complete[-1])) if complete else None
    outstanding = len(state.ledger.outstanding())
    if checkpoint is None:
        where = "no checkpoint to resume from (checkpoints are off or no step finished)"
    else:
        where = f"--resume continues from {checkpoint} and re-issues the {outstanding} unfinished group(s)"
    return {"signal": signal_name, "step": state.step, "checkpoint": checkpoint, "outstanding_groups": outstanding,
            "message": f"stopped by {signal_name} at step {state.step}: {where}"}


def _reward_by_epoch(rewards: list[float], dataset_size: int, prompts_per_step: int) -> list[float]:
    """Mean training reward of the steps whose prompts fall in each epoch over the dataset (a step
    straddling two epochs counts for the one it starts in); [] without a fixed dataset."""
    if dataset_size == 0:
        return []
    by_epoch: dict[int, list[float]] = {}
    for step, reward in enumerate(rewards):
        by_epoch.setdefault(step * prompts_per_step // dataset_size, []).append(reward)
    return [sum(values) / len(values) for _, values in sorted(by_epoch.items())]


def _summary(controller, status, profiles: list[dict], feed: dict, startup_s: float, wall_s: float,
             run_dir: RunDir) -> dict[str, Any]:
    state = controller.state
    history = run_dir.metrics()
    rewards = [m["reward_mean"] for m in history]
    third = max(1, len(rewards) // 3)
    spec = controller.spec
    return {
        "reward_by_epoch": _reward_by_epoch(rewards, spec.dataset_size, spec.prompts_per_step),
        "run_dir": str(run_dir.path), "steps": state.step, "policy_version": state.policy_version,
        "draft_version": state.draft_version, "startup_s": startup_s, "wall_s": wall_s,
        "reward_first_third": sum(rewards[:third]) / third if rewards else 0.0,
        "reward_last_third": sum(rewards[-third:]) / third if rewards else 0.0,
        "acceptance_length_mean": (sum(m["acceptance_length"] for m in history) / len(history)) if history else 0.0,
        "rollout_tokens_per_s_mean": (sum(m["rollout_tokens_per_s"] for m in history) / len(history))
        if history else 0.0,
        "step_s_mean": (sum(m["step_s"] for m in history) / len(history)) if history else 0.0,
        "groups": {s: state.ledger.num_groups(s) for s in ("trained", "dropped", "issued")},
        "samples": dict(state.ledger.sample_counts()),
        "ledger_problems": state.ledger.problems(outstanding_ok=controller.stopped_early),
        "counters": dict(state.counters), "restores": state.restores, "feed": feed,
        "rollouts": status.rollouts, "rewards": status.rewards, "refresh": status.refresh,
        "cost_profiles": profiles,
    }
