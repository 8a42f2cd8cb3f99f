"""Phase 6: load the saved zoo back through the engine's loaders and measure it for the manifest.

Measuring the directories on disk (not the in-memory modules that were trained) checks that
they load, and reports exactly what a user of the zoo gets.
"""

from __future__ import annotations

import time

import torch

from rollspec.engine.drafters.base import Drafter
from rollspec.engine.drafters.build import build_drafter
from rollspec.engine.loader import LoadedModel, load_model
from rollspec.models.cost import LOW_PERCENTILE, low_percentile_ms, step_times_s
from rollspec.models.evaluate import acceptance_prompts, engine_config, measure_acceptance, task_accuracy
from rollspec.models.paths import ZooPaths
from rollspec.models.progress import PhaseProgress, ProgressReporter
from rollspec.models.recipe import Recipe, derive_seed
from rollspec.rl.tasks import DEFAULT_DIFFICULTY

DRAFTERS = ("draft_model", "eagle", "mtp", "ngram")
TIMED_DRAFTERS = ("draft_model", "eagle", "mtp")  # n-gram lookup costs host time only, not worth a ratio
TEMPERATURES = {"greedy": 0.0, "temperature_1": 1.0}
COST_BATCH_SIZES = (1, 16)
ACCEPTANCE_BATCH_SIZE = 16
COST_ROUNDS = 3  # interleaved over all models, so a burst of outside load hits each of them alike
NUM_RUNS = len(TEMPERATURES) * (1 + len(DRAFTERS)) + len(COST_BATCH_SIZES)
# Greedy accuracy at the harder difficulties, up to the RL default, shows the room left for RL.
HARDER_UP_TO = DEFAULT_DIFFICULTY
HARDER_MAX_NEW_TOKENS = 160  # difficulty-3 references reach ~110 tokens


def _drafter(kind: str, paths: ZooPaths, policy: LoadedModel, batch_size: int) -> Drafter:
    draft_path = {"draft_model": paths.draft, "eagle": paths.eagle}.get(kind)
    return build_drafter(kind, policy=policy, config=engine_config(batch_size), draft_path=draft_path)


def measure_zoo(paths: ZooPaths, recipe: Recipe, seed: int, progress: ProgressReporter) -> dict:
    """Accuracy per task, acceptance length per drafter and per-token costs, as manifest sections."""
    policy = load_model(paths.policy)
    k = recipe.eval_k
    start = time.perf_counter()
    with progress.phase("measure", NUM_RUNS) as bar:
        accuracy: dict = {"difficulty": recipe.difficulty, "prompts_per_task": recipe.eval_prompts_per_task}
        for name, temperature in TEMPERATURES.items():
            accuracy[name] = task_accuracy(policy.model, seed, temperature=temperature, difficulty=recipe.difficulty,
                                           prompts_per_task=recipe.eval_prompts_per_task,
                                           max_new_tokens=recipe.max_new_tokens)
            bar.advance()
        accuracy["greedy_harder"] = {
            f"difficulty_{level}": task_accuracy(policy.model, seed, temperature=0.0, difficulty=level,
                                                 prompts_per_task=recipe.eval_harder_prompts_per_task,
                                                 max_new_tokens=HARDER_MAX_NEW_TOKENS)
            for level in range(recipe.difficulty + 1, HARDER_UP_TO + 1) if recipe.eval_harder_prompts_per_task}
        prompts = acceptance_prompts(recipe, seed)
        acceptance: dict = {"k": k}
        for name, temperature in TEMPERATURES.items():
            acceptance[name] = {}
            for kind in DRAFTERS:
                drafter = _drafter(kind, paths, policy, ACCEPTANCE_BATCH_SIZE)
                result = measure_acceptance(policy.model, drafter, prompts, temperature=temperature, k=k,
                                            seed=derive_seed(seed, f"acceptance-{kind}-{name}"),
                                            max_new_tokens=recipe.max_new_tokens, batch_size=ACCEPTANCE_BATCH_SIZE)
                acceptance[name][kind] = result.to_dict()
                bar.advance()
        cost = _costs(paths, policy, prompts, k, bar)
    return {"accuracy": accuracy, "acceptance": acceptance, "cost": cost,
            "measure_wall_s": round(time.perf_counter() - start, 2)}


def _costs(paths: ZooPaths, policy: LoadedModel, prompts: list[list[int]], k: int, bar: PhaseProgress) -> dict:
    """Per-token milliseconds of the policy and each model-based drafter, and the ratios."""
    out: dict = {"k": k, "num_threads": torch.get_num_threads(), "statistic": f"p{int(100 * LOW_PERCENTILE)}"}
    for batch_size in COST_BATCH_SIZES:
        times: dict[str, list[float]] = {name: [] for name in ("policy", *TIMED_DRAFTERS)}
        for _ in range(COST_ROUNDS):
            times["policy"] += step_times_s(policy.model, prompts, batch_size)
            for kind in TIMED_DRAFTERS:
                times[kind] += step_times_s(policy.model, prompts, batch_size, k=k,
                                            drafter=_drafter(kind, paths, policy, batch_size))
        bar.advance()
        row = {"policy_decode_step_ms": round(low_percentile_ms(times["policy"]), 3)}
        for kind in TIMED_DRAFTERS:
            row[f"{kind}_token_ms"] = round(low_percentile_ms(times[kind]), 3)
            row[f"policy_over_{kind}"] = round(row["policy_decode_step_ms"] / row[f"{kind}_token_ms"], 2)
        out[f"batch_{batch_size}"] = row
    return out
