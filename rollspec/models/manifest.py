"""The zoo's manifest.json: how it was built, what it measured, and a checksum of every file.

The manifest is written last, after every model file is in place, so its presence with a
matching recipe hash and matching checksums is what makes a zoo directory usable.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import torch

import rollspec

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
_CHUNK_BYTES = 1 << 20


class ManifestError(ValueError):
    """A manifest that is missing, unreadable, or disagrees with the files next to it."""

    def __init__(self, path: object, detail: str):
        super().__init__(f"zoo manifest {path}: {detail}")
        self.path, self.detail = path, detail


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` except the manifest, keyed by POSIX relative path."""
    return {path.relative_to(root).as_posix(): sha256_file(path)
            for path in sorted(root.rglob("*")) if path.is_file() and path.name != MANIFEST_NAME}


def code_version() -> dict:
    """The package version and, when run from a git checkout, its commit and whether it had edits."""
    version = {"rollspec": rollspec.__version__, "torch": torch.__version__}
    root = Path(rollspec.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "rollspec"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):  # not a checkout, or no git: the version is enough
        return version
    return {**version, "git_commit": commit, "git_dirty": bool(status.strip())}


def write_manifest(root: Path, manifest: dict) -> Path:
    """Add the file checksums and format to `manifest` and write it as root/manifest.json."""
    full = {"format": MANIFEST_FORMAT, **manifest, "files": file_checksums(root)}
    path = root / MANIFEST_NAME
    path.write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    return path


def read_manifest(root: Path) -> dict:
    """The parsed manifest of the zoo at `root`, or ManifestError."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(path, "file not found")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(path, f"unreadable: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestError(path, f"expected a JSON object with format {MANIFEST_FORMAT}")
    return manifest


def mismatched_files(root: Path, manifest: dict) -> list[str]:
    """Files the manifest lists whose content differs or that are missing, plus unlisted files."""
    recorded = manifest.get("files", {})
    actual = file_checksums(root)
    return sorted(name for name in set(recorded) | set(actual) if recorded.get(name) != actual.get(name))


def summarize(manifest: dict) -> list[str]:
    """A few human-readable lines: sizes, accuracy, acceptance, cost ratios, build time."""
    models = manifest["models"]
    accuracy, acceptance, cost = manifest["accuracy"], manifest["acceptance"], manifest["cost"]
    drafters = [kind for kind in acceptance["greedy"]]
    lines = [
        "models: " + ", ".join(f"{name} {m['num_layers']}x{m['hidden_size']} ({m['num_params'] / 1e6:.2f}M)"
                               for name, m in models.items()),
        f"held-out accuracy at difficulty {accuracy['difficulty']}: greedy {accuracy['greedy']['mean']:.0%}, "
        f"temperature 1 {accuracy['temperature_1']['mean']:.0%}",
        f"acceptance length at k={acceptance['k']} (greedy / T=1): " + ", ".join(
            f"{kind} {acceptance['greedy'][kind]['acceptance_length']:.2f} / "
            f"{acceptance['temperature_1'][kind]['acceptance_length']:.2f}" for kind in drafters),
        "policy cost per token over drafter (batch 1 / 16): " + ", ".join(
            f"{kind} {cost['batch_1'][key]:.1f}x / {cost['batch_16'][key]:.1f}x"
            for kind in drafters if (key := f"policy_over_{kind}") in cost["batch_1"]),
        f"built in {manifest['wall_s']['total']:.0f} s (load average {manifest['host']['load_average_1m_start']} "
        f"at start)",
    ]
    return lines
