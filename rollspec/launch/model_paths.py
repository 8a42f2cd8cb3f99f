"""Model references -> directories: `zoo:<name>` resolves through the model zoo (built on first use)."""

from pathlib import Path

from rollspec.launch.config import ConfigError, TrainConfig, check_model_directories
from rollspec.launch.config_sections import ZOO_PREFIX
from rollspec.launch.specs import ModelPaths


def resolve_model_paths(config: TrainConfig) -> ModelPaths:
    """Directories of the policy and (if the drafter needs one) the draft model or EAGLE head."""
    check_model_directories(config)
    zoo = None
    if config.models.policy.startswith(ZOO_PREFIX) or (config.uses_draft_directory
                                                       and config.models.draft.startswith(ZOO_PREFIX)):
        from rollspec.models.zoo import ensure_zoo  # heavy; builds the zoo (minutes) the first time

        zoo = ensure_zoo(progress=True)

    def resolve(key: str, value: str) -> Path:
        if not value.startswith(ZOO_PREFIX):
            return Path(value).expanduser().resolve()
        path = getattr(zoo, value[len(ZOO_PREFIX):])
        if not (path / "config.json").is_file():
            raise ConfigError(f"{key}: {value} resolved to {path}, which is not a model directory")
        return path

    policy = resolve("models.policy", config.models.policy)
    draft = resolve("models.draft", config.models.draft) if config.uses_draft_directory else None
    return ModelPaths(policy=policy, draft=draft)
