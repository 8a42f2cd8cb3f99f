"""A run's directory: resolved config, per-step metrics (JSONL), checkpoints, final ledger and summary."""

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from rollspec.actors.checkpoints import write_json_atomic
from rollspec.launch.config import ConfigError, TrainConfig

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
LEDGER_FILE = "ledger.json"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"


class RunDir:
    """Paths and writers of one run directory."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def open(cls, config: TrainConfig, *, resume: bool) -> "RunDir":
        """The run directory <root>/<name>: must exist to resume; a fresh run must not find one there
        unless run.overwrite is set."""
        path = Path(config.run.root).expanduser().resolve() / config.run.name
        if resume and not path.is_dir():
            raise ConfigError(f"--resume: run directory {path} does not exist (run.root / run.name)")
        if not resume and path.exists():
            if not config.run.overwrite:
                raise ConfigError(f"run directory {path} already exists; pass --resume to continue that run, "
                                  f"run.overwrite=true to replace it, or another run.name")
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINT_DIR

    def write_config(self, config: TrainConfig, resolved: dict[str, Any]) -> None:
        """The config as run (every default spelled out) plus the resolved model directories."""
        data = {**config.model_dump(mode="json"), "resolved": resolved}
        (self.path / CONFIG_FILE).write_text(yaml.safe_dump(data, sort_keys=False))

    def append_metrics(self, metrics: dict[str, Any]) -> None:
        with open(self.path / METRICS_FILE, "a") as handle:
            handle.write(json.dumps(metrics) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / METRICS_FILE
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def write_final(self, ledger: dict[str, Any], summary: dict[str, Any]) -> None:
        write_json_atomic(self.path / LEDGER_FILE, ledger)
        write_json_atomic(self.path / SUMMARY_FILE, summary)
