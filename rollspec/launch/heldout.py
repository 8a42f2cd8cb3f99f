"""Held-out reward before and after a run, measured by the driver on the same prompts and seeds.

The per-step training reward moves with the difficulty of each step's prompts as much as with
learning (on the zoo tasks, a run that does not learn at all moves by +/-0.07 between thirds), so
"did RL help" is answered here: the eval split of the run's task mixture, the run's sampling
temperature, several samples per prompt, fixed seeds, once with the starting weights and once with
the learner's final ones. Plain decoding on the driver's CPU: a few seconds for the tiny models.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from rollspec.engine.config import EngineConfig
from rollspec.engine.engine import Engine
from rollspec.engine.loader import LoadedModel, load_model
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.engine.weights import hf_to_native, load_native
from rollspec.rl.mixture import TaskMixture
from rollspec.rl.split import Split
from rollspec.rl.tasks import reward
from rollspec.rl.template import decode_response, encode_prompt
from rollspec.rl.vocab import EOS_ID

EVAL_SEED = 7919  # fixed so the before and after numbers sample with the same random stream


@dataclasses.dataclass(frozen=True, slots=True)
class HeldoutSpec:
    """What to evaluate on: the run's mixture (eval split), how many prompts and samples each."""

    task_weights: dict[str, float]
    data_seed: int
    difficulty: int
    eval_fraction: float
    rl_fraction: float
    num_prompts: int
    samples_per_prompt: int
    temperature: float
    max_new_tokens: int
    max_seq_len: int


class HeldoutEvaluator:
    """Scores the starting policy at construction and any later weights on the same requests."""

    def __init__(self, policy_dir: str | Path, spec: HeldoutSpec):
        self.spec = spec
        self._loaded: LoadedModel = load_model(policy_dir)
        mixture = TaskMixture(spec.task_weights, spec.data_seed, split=Split.EVAL, difficulty=spec.difficulty,
                              eval_fraction=spec.eval_fraction, rl_fraction=spec.rl_fraction)
        self._examples = mixture.take(spec.num_prompts)
        self.initial = self._score()

    def score_weights(self, weights_hf: dict[str, torch.Tensor]) -> dict:
        """Mean reward (overall and per task) of `weights_hf` (Hugging Face names) on the held-out set."""
        load_native(self._loaded.model, hf_to_native(weights_hf, self._loaded.config))
        return self._score()

    def _score(self) -> dict:
        spec = self.spec
        engine = Engine(self._loaded.model, EngineConfig(max_batch_size=64, max_seq_len=spec.max_seq_len, k_max=0))
        requests = [Request(request_id=f"{i}/{j}", prompt_ids=tuple(encode_prompt(example.prompt)),
                            params=SamplingParams(temperature=spec.temperature, max_new_tokens=spec.max_new_tokens,
                                                  stop_token_ids=(EOS_ID,),
                                                  seed=EVAL_SEED + i * spec.samples_per_prompt + j))
                    for i, example in enumerate(self._examples) for j in range(spec.samples_per_prompt)]
        by_task: dict[str, list[float]] = defaultdict(list)
        lengths = []
        with torch.no_grad():
            for completion in engine.generate(requests):
                example = self._examples[int(completion.request_id.split("/")[0])]
                by_task[example.task].append(reward(example.prompt, decode_response(completion.token_ids)))
                lengths.append(len(completion.token_ids))
        every = [r for rewards in by_task.values() for r in rewards]
        return {"reward_mean": statistics.fmean(every), "num_samples": len(every),
                "response_tokens_mean": statistics.fmean(lengths),
                "by_task": {task: statistics.fmean(rewards) for task, rewards in sorted(by_task.items())}}
