"""Does the run fit the Ray cluster? Counted before any actor starts, so an impossible request fails
at once with the numbers instead of hanging in Ray's scheduler."""

from rollspec.launch.config import ConfigError, TrainConfig


def cpu_breakdown(config: TrainConfig) -> dict[str, float]:
    """Ray CPUs each component reserves."""
    out = {
        f"rollout ({config.rollout.num_actors} x {config.rollout.cpus_per_actor})":
            config.rollout.num_actors * config.rollout.cpus_per_actor,
        f"reward ({config.reward.num_actors} x {config.reward.cpus_per_actor})":
            config.reward.num_actors * config.reward.cpus_per_actor,
        f"learner ({config.learner.num_ranks} x {config.learner.cpus_per_rank})":
            config.learner.num_ranks * config.learner.cpus_per_rank,
    }
    if config.runs_draft_refresh:
        out[f"draft_refresh ({config.draft_refresh.cpus})"] = config.draft_refresh.cpus
    return out


def check_cpus(config: TrainConfig, available: float, where: str) -> None:
    """ConfigError listing what each component asks for when the total exceeds `available`."""
    breakdown = cpu_breakdown(config)
    needed = sum(breakdown.values())
    if needed > available + 1e-9:
        parts = ", ".join(f"{name} = {cpus:g}" for name, cpus in breakdown.items())
        raise ConfigError(f"the run needs {needed:g} Ray CPUs ({parts}) but {where} has {available:g}; lower "
                          f"num_actors / cpus_per_* / learner.num_ranks, or raise ray.num_cpus for a local Ray")
