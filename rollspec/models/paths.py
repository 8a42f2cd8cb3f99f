"""Where the zoo lives and what is inside it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import rollspec
from rollspec.models.manifest import MANIFEST_NAME

ZOO_DIR_ENV = "ROLLSPEC_ZOO_DIR"


def default_zoo_dir() -> Path:
    """$ROLLSPEC_ZOO_DIR if set, else <repo>/.cache/zoo (gitignored)."""
    if os.environ.get(ZOO_DIR_ENV):
        return Path(os.environ[ZOO_DIR_ENV]).expanduser()
    return Path(rollspec.__file__).resolve().parents[1] / ".cache" / "zoo"


@dataclasses.dataclass(frozen=True, slots=True)
class ZooPaths:
    """The zoo's layout: HF-format directories for the policy (MTP heads inside its checkpoint),
    the draft model and the EAGLE head, each with the tokenizer files, plus manifest.json."""

    root: Path

    @property
    def policy(self) -> Path:
        return self.root / "policy"

    @property
    def draft(self) -> Path:
        return self.root / "draft"

    @property
    def eagle(self) -> Path:
        return self.root / "eagle"

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_NAME
