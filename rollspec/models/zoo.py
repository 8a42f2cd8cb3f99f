"""The model zoo: build (or reuse) the policy, draft model, EAGLE head and MTP heads.

Building runs the phases in order: policy SFT, teacher outputs (reference sequences and
policy samples), draft distillation, EAGLE head, MTP heads, saving, then measuring the saved
directories. It happens in a sibling temporary directory that replaces the zoo only once the
manifest is written, under a file lock, so a crash or a concurrent caller never sees half a zoo.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from rollspec.models.distill import train_draft
from rollspec.models.eagle_train import train_eagle
from rollspec.models.hf_dir import write_eagle_dir, write_model_dir
from rollspec.models.manifest import (
    MANIFEST_NAME,
    ManifestError,
    code_version,
    mismatched_files,
    read_manifest,
    write_manifest,
)
from rollspec.models.measure import measure_zoo
from rollspec.models.mtp_train import train_mtp
from rollspec.models.paths import ZooPaths, default_zoo_dir
from rollspec.models.progress import ProgressReporter, RichProgress, SilentProgress
from rollspec.models.recipe import Recipe, full_recipe
from rollspec.models.sft import train_policy
from rollspec.models.teacher import build_teacher_data
from rollspec.rl.tokenizer import save_tokenizer

DEFAULT_SEED = 0


class ZooDirectoryError(RuntimeError):
    """The zoo's directory holds something that is not a zoo, which we refuse to overwrite."""

    def __init__(self, path: object):
        super().__init__(f"{path} exists and is not a rollspec zoo (no {MANIFEST_NAME}); pick another --out or "
                         f"remove it yourself")
        self.path = path


def cached_zoo(root: Path, recipe: Recipe, seed: int) -> ZooPaths | None:
    """The zoo at `root` if its manifest matches this recipe and seed and every file checks out."""
    try:
        manifest = read_manifest(root)
    except ManifestError:
        return None
    if manifest.get("recipe_hash") != recipe.hash(seed) or mismatched_files(root, manifest):
        return None
    return ZooPaths(root)


def build_zoo(out_dir: str | Path | None = None, seed: int = DEFAULT_SEED, progress: bool = True, *,
              recipe: Recipe | None = None, force: bool = False) -> ZooPaths:
    """Train and save the zoo at `out_dir` (default: `default_zoo_dir()`); reuse a matching cached
    zoo unless `force`. Same recipe and seed give byte-identical model files."""
    root = Path(out_dir).expanduser() if out_dir is not None else default_zoo_dir()
    recipe = recipe or full_recipe()
    root.parent.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        if not force and (paths := cached_zoo(root, recipe, seed)) is not None:
            return paths
        if root.exists() and not _is_replaceable(root):
            raise ZooDirectoryError(root)
        staging = root.with_name(f"{root.name}.building-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            with (RichProgress() if progress else SilentProgress()) as reporter:
                _build(ZooPaths(staging), recipe, seed, reporter)
            _replace(staging, root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return ZooPaths(root)


def ensure_zoo(out_dir: str | Path | None = None, seed: int = DEFAULT_SEED, progress: bool = True) -> ZooPaths:
    """The zoo's paths, building it first if it is missing or stale (what demos and benchmarks call)."""
    return build_zoo(out_dir, seed, progress)


def _build(paths: ZooPaths, recipe: Recipe, seed: int, reporter: ProgressReporter) -> None:
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(recipe.num_threads)
    try:
        times: dict[str, dict[str, float]] = {"wall_s": {}, "cpu_s": {}}
        load_at_start = os.getloadavg()[0]
        start, start_cpu = time.perf_counter(), time.process_time()
        with _timed(times, "policy_sft"):
            policy, sft_stats = train_policy(recipe, seed, reporter)
        with _timed(times, "teacher_data"):
            teacher = build_teacher_data(policy, recipe, seed, reporter)
        with _timed(times, "draft_distill"):
            draft, draft_stats = train_draft(recipe, seed, teacher, reporter)
        with _timed(times, "eagle"):
            eagle, eagle_stats = train_eagle(recipe, seed, policy, teacher, reporter)
        with _timed(times, "mtp"):
            mtp, mtp_stats = train_mtp(recipe, seed, policy, teacher, reporter)
        with _timed(times, "save"):
            save_tokenizer(paths.policy)
            write_model_dir(paths.policy, policy, extra_weights=mtp.checkpoint_weights())
            write_model_dir(paths.draft, draft, tokenizer_dir=paths.policy)
            write_eagle_dir(paths.eagle, eagle, tokenizer_dir=paths.policy)
        teacher_tokens = {"reference": teacher.num_reference_tokens, "policy_samples": teacher.num_sample_tokens}
        del teacher
        with _timed(times, "measure"):
            measured = measure_zoo(paths, recipe, seed, reporter)
        times["wall_s"]["total"] = round(time.perf_counter() - start, 2)
        times["cpu_s"]["total"] = round(time.process_time() - start_cpu, 2)
        models = {"policy": _size(policy), "draft": _size(draft), "eagle": _size(eagle), "mtp": _size(mtp)}
        phases = [s.to_dict() for s in (sft_stats, draft_stats, eagle_stats, mtp_stats)]
        write_manifest(paths.root, {
            "recipe_hash": recipe.hash(seed), "seed": seed, "code_version": code_version(),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": _host(load_at_start),
            "layout": {"policy": "policy", "draft": "draft", "eagle": "eagle", "mtp": "policy (mtp.* weights)"},
            "models": models, "phases": phases,
            "teacher_response_tokens": teacher_tokens,
            **times, **measured, "recipe": recipe.to_dict(),
        })
    finally:
        torch.set_num_threads(previous_threads)


@contextlib.contextmanager
def _timed(times: dict[str, dict[str, float]], name: str) -> Iterator[None]:
    """Wall and CPU seconds of a phase. CPU seconds (all threads) do not grow when others load
    the machine, so they bound what the phase would take alone: between cpu_s / threads and cpu_s."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    times["wall_s"][name] = round(time.perf_counter() - wall, 2)
    times["cpu_s"][name] = round(time.process_time() - cpu, 2)


def _size(module: torch.nn.Module) -> dict:
    cfg = module.config
    num_params = sum(p.numel() for p in module.parameters())
    return {"num_params": num_params, "model_type": cfg.model_type, "hidden_size": cfg.hidden_size,
            "num_layers": len(module.layers), "num_heads": cfg.num_heads, "num_kv_heads": cfg.num_kv_heads,
            "head_dim": cfg.head_dim, "intermediate_size": cfg.intermediate_size, "vocab_size": cfg.vocab_size}


def _host(load_at_start: float) -> dict:
    # Others may share the CPU while a zoo builds; the load average says how much the times mean.
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "load_average_1m_start": round(load_at_start, 2), "load_average_1m_end": round(os.getloadavg()[0], 2)}


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on <root>.lock: concurrent builders wait, then find the cache warm."""
    with open(root.with_name(f"{root.name}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_replaceable(root: Path) -> bool:
    return root.is_dir() and ((root / MANIFEST_NAME).is_file() or not any(root.iterdir()))


def _replace(staging: Path, root: Path) -> None:
    """Move the finished build into place; the old zoo is removed only after the move succeeds."""
    retired = root.with_name(f"{root.name}.old-{os.getpid()}")
    if root.exists():
        root.rename(retired)
    staging.rename(root)
    shutil.rmtree(retired, ignore_errors=True)
