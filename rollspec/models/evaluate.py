"""Measuring the zoo with the engine: held-out accuracy per task and each drafter's acceptance.

Everything runs through `rollspec.engine.Engine`, the same path rollouts take, so the numbers
in the manifest are the ones a rollout would see (including the lossless verifier).
"""

from __future__ import annotations

import dataclasses

from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters.base import Drafter
from rollspec.engine.engine import Engine
from rollspec.engine.model import Decoder
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Completion, Request
from rollspec.models.recipe import Recipe, derive_seed
from rollspec.rl.mixture import TaskMixture
from rollspec.rl.split import Split
from rollspec.rl.tasks import Example, reward, task_names
from rollspec.rl.template import decode_response, encode_prompt
from rollspec.rl.vocab import EOS_ID

MAX_SEQ_LEN = 256  # prompts reach ~35 tokens, the recipe's generation budget at most ~200
EVAL_BATCH_SIZE = 32


def engine_config(batch_size: int = EVAL_BATCH_SIZE, k_max: int = 8) -> EngineConfig:
    return EngineConfig(max_batch_size=batch_size, max_seq_len=MAX_SEQ_LEN, k_max=k_max)


def held_out_examples(seed: int, task: str, count: int, difficulty: int) -> list[Example]:
    """`count` EVAL-split examples of one task (never trained on: the split hashes the prompt)."""
    mixture = TaskMixture({task: 1.0}, derive_seed(seed, f"eval-{task}"), split=Split.EVAL, difficulty=difficulty)
    return mixture.take(count)


def generate(policy: Decoder, prompts: list[list[int]], *, temperature: float, seed: int, max_new_tokens: int,
             drafter: Drafter | None = None, k: int = 0, batch_size: int = EVAL_BATCH_SIZE) -> list[Completion]:
    """Complete every prompt once, each request seeded so results do not depend on batching."""
    engine = Engine(policy, engine_config(batch_size), drafter=drafter, depth=FixedDepth(k))
    requests = [
        Request(request_id=str(i), prompt_ids=tuple(p),
                params=SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens,
                                      stop_token_ids=(EOS_ID,), seed=derive_seed(seed, f"request-{i}")))
        for i, p in enumerate(prompts)
    ]
    return engine.generate(requests)


def task_accuracy(policy: Decoder, seed: int, *, temperature: float, difficulty: int, prompts_per_task: int,
                  max_new_tokens: int) -> dict[str, float]:
    """Fraction of held-out prompts per task (and "mean" over tasks) whose answer earns reward 1."""
    examples = [ex for task in task_names() for ex in held_out_examples(seed, task, prompts_per_task, difficulty)]
    completions = generate(policy, [encode_prompt(ex.prompt) for ex in examples], temperature=temperature,
                           seed=derive_seed(seed, f"eval-accuracy-{temperature}-{difficulty}"),
                           max_new_tokens=max_new_tokens)
    scores: dict[str, list[float]] = {}
    for ex, completion in zip(examples, completions):
        scores.setdefault(ex.task, []).append(reward(ex, decode_response(completion.token_ids)))
    accuracy = {task: round(sum(s) / len(s), 4) for task, s in scores.items()}
    accuracy["mean"] = round(sum(accuracy.values()) / len(accuracy), 4)
    return accuracy


@dataclasses.dataclass(frozen=True, slots=True)
class Acceptance:
    """Speculation outcome over many completions: tokens per verify step and per-position rates."""

    acceptance_length: float
    accept_rate_per_position: tuple[float, ...]
    num_verify_steps: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def acceptance_prompts(recipe: Recipe, seed: int) -> list[list[int]]:
    """Held-out prompts from the whole mixture (so every task's share is as in training)."""
    mixture = recipe.mixture(seed, Split.EVAL)
    return [encode_prompt(ex.prompt) for ex in mixture.take(recipe.eval_acceptance_prompts)]


def measure_acceptance(policy: Decoder, drafter: Drafter, prompts: list[list[int]], *, temperature: float, k: int,
                       seed: int, max_new_tokens: int, batch_size: int = 16) -> Acceptance:
    """Mean acceptance length (accepted drafts + 1 per verify step) generating with `drafter` at depth k."""
    completions = generate(policy, prompts, temperature=temperature, seed=seed, max_new_tokens=max_new_tokens,
                           drafter=drafter, k=k, batch_size=batch_size)
    steps = sum(c.stats.num_verify_steps for c in completions)
    accepted = [sum(c.stats.accepted_per_position[j] for c in completions) for j in range(k)]
    drafted = [sum(c.stats.drafted_per_position[j] for c in completions) for j in range(k)]
    return Acceptance(acceptance_length=round(1 + sum(accepted) / max(steps, 1), 4),
                      accept_rate_per_position=tuple(round(a / max(d, 1), 4) for a, d in zip(accepted, drafted)),
                      num_verify_steps=steps)
