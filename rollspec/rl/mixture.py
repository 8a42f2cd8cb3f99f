"""A weighted mixture of tasks as a deterministic, random-access prompt dataset."""

import bisect
import hashlib
import math
from collections.abc import Iterator, Mapping

from rollspec.rl.config import MixtureConfig
from rollspec.rl.split import DEFAULT_EVAL_FRACTION, DEFAULT_RL_FRACTION, Split, check_fractions, split_of
from rollspec.rl.tasks import DEFAULT_DIFFICULTY, Example, get_task
from rollspec.rl.tasks.task import check_difficulty

# Draws per index before giving up on finding a prompt of the requested split. The EVAL side
# needs about 1/eval_fraction draws, so hitting this means the task's prompt space (tiny at
# low difficulty) has no prompt on that side, which should be an error, not a hang.
MAX_ATTEMPTS = 1000


class MixtureWeightsError(ValueError):
    """Weights that are empty, negative, non-finite, or sum to zero."""

    def __init__(self, weights: object):
        super().__init__(f"weights must map task names to finite non-negative floats with a positive sum, got {weights!r}")
        self.weights = weights


class SplitExhaustedError(RuntimeError):
    """No prompt of the requested split was found for one index within MAX_ATTEMPTS draws."""

    def __init__(self, task: str, split: Split, index: int):
        super().__init__(f"task {task!r}: no {split.value} prompt within {MAX_ATTEMPTS} draws at index {index}")
        self.task, self.split, self.index = task, split, index


def _hash64(*parts: object) -> int:
    text = "/".join(map(str, parts))
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


class TaskMixture:
    """Examples drawn from weighted tasks, addressed by index.

    `mixture[i]` depends only on (weights, seed, split, difficulty, the split fractions, i): never
    on call order, process or machine, so a controller can lease index ranges, lose them,
    and regenerate exactly the same prompts after a restart. Every example of a split has
    a prompt of that split only: TRAIN, RL and EVAL never share a prompt (see `rollspec.rl.split`).
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        seed: int,
        *,
        split: Split = Split.TRAIN,
        difficulty: int | Mapping[str, int] = DEFAULT_DIFFICULTY,
        eval_fraction: float = DEFAULT_EVAL_FRACTION,
        rl_fraction: float = DEFAULT_RL_FRACTION,
    ):
        if not isinstance(weights, Mapping) or not weights:
            raise MixtureWeightsError(weights)
        for name, weight in weights.items():
            get_task(name)  # raises UnknownTaskError with the bad name
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise MixtureWeightsError(weights)
            if weight < 0:
                raise MixtureWeightsError(weights)
        # Sorted so the same weights give the same stream whatever the mapping's order.
        self.task_names = tuple(sorted(name for name, weight in weights.items() if weight > 0))
        if not self.task_names:
            raise MixtureWeightsError(weights)
        total = math.fsum(weights[name] for name in self.task_names)
        running, self._cumulative = 0.0, []
        for name in self.task_names:
            running += weights[name] / total
            self._cumulative.append(running)
        self.difficulties = self._difficulties(difficulty)
        self.seed, self.split = seed, Split(split)
        self.eval_fraction, self.rl_fraction = check_fractions(eval_fraction, rl_fraction)

    @classmethod
    def from_config(cls, config: MixtureConfig, split: Split = Split.TRAIN) -> "TaskMixture":
        """The mixture described by `config`, drawing from `split`."""
        return cls(config.weights, config.seed, split=split, difficulty=config.difficulty,
                   eval_fraction=config.eval_fraction, rl_fraction=config.rl_fraction)

    def _difficulties(self, difficulty: int | Mapping[str, int]) -> dict[str, int]:
        if not isinstance(difficulty, Mapping):
            return {name: check_difficulty(difficulty) for name in self.task_names}
        for name in difficulty:
            get_task(name)
        return {name: check_difficulty(difficulty.get(name, DEFAULT_DIFFICULTY)) for name in self.task_names}

    def task_at(self, index: int) -> str:
        """The name of the task that example `index` is drawn from."""
        u = _hash64("task", self.seed, index) / 2**64
        return self.task_names[min(bisect.bisect_right(self._cumulative, u), len(self.task_names) - 1)]

    def __getitem__(self, index: int) -> Example:
        """The example at `index` (any int >= 0); the same index always gives the same example."""
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise IndexError(f"mixture index must be an int >= 0, got {index!r}")
        name = self.task_at(index)
        task = get_task(name)
        for attempt in range(MAX_ATTEMPTS):
            example = task.generate(_hash64("example", self.seed, index, attempt), self.difficulties[name])
            if split_of(example.prompt, self.eval_fraction, self.rl_fraction) is self.split:
                return example
        raise SplitExhaustedError(name, self.split, index)

    def take(self, count: int, start: int = 0) -> list[Example]:
        """Examples `start .. start + count - 1`."""
        return [self[i] for i in range(start, start + count)]

    def __iter__(self) -> Iterator[Example]:
        """Examples 0, 1, 2, ... without end."""
        index = 0
        while True:
            yield self[index]
            index += 1
