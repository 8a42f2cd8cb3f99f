"""What a built-in verifiable task is: a seeded generator plus a final-answer reward."""

import random
from abc import ABC, abstractmethod
from typing import ClassVar

from rollspec.rl.tasks.example import ANSWER_DELIMITER, Example, PromptFormatError, extract_answer

MIN_DIFFICULTY = 1
MAX_DIFFICULTY = 5
DEFAULT_DIFFICULTY = 3


class DifficultyError(ValueError):
    """A difficulty outside [MIN_DIFFICULTY, MAX_DIFFICULTY]."""

    def __init__(self, difficulty: object):
        super().__init__(f"difficulty must be an int in [{MIN_DIFFICULTY}, {MAX_DIFFICULTY}], got {difficulty!r}")
        self.difficulty = difficulty


class TaskMismatchError(ValueError):
    """An Example handed to a task other than the one that generated it."""

    def __init__(self, task: str, example_task: str):
        super().__init__(f"task {task!r} cannot grade an example of task {example_task!r}")
        self.task, self.example_task = task, example_task


def random_number(rng: random.Random, num_digits: int) -> int:
    """A uniformly drawn integer with exactly num_digits decimal digits (0 counts as one digit)."""
    return rng.randint(10 ** (num_digits - 1) if num_digits > 1 else 0, 10**num_digits - 1)


def check_difficulty(difficulty: object) -> int:
    """Return `difficulty` if it is a valid level, else raise DifficultyError."""
    if isinstance(difficulty, bool) or not isinstance(difficulty, int):
        raise DifficultyError(difficulty)
    if not MIN_DIFFICULTY <= difficulty <= MAX_DIFFICULTY:
        raise DifficultyError(difficulty)
    return difficulty


class Task(ABC):
    """A verifiable task: prompts are `prefix + body`; responses are `scratchpad#answer`.

    Subclasses are stateless, so one instance can serve every thread and process.
    Invariants: `generate` is a pure function of (seed, difficulty); `reward` grades only the
    final answer, returns exactly 0.0 or 1.0 for any response text and never raises on it
    (a prompt that is not this task's raises PromptFormatError: that is a caller bug).
    """

    name: ClassVar[str]
    body_form: ClassVar[str]  # human-readable prompt body shape, for error messages

    @property
    def prefix(self) -> str:
        """The prompt prefix that names this task to the policy."""
        return f"{self.name}:"

    def generate(self, seed: int, difficulty: int = DEFAULT_DIFFICULTY) -> Example:
        """Build the example for `seed` at `difficulty`; same arguments, same example."""
        rng = random.Random(seed)
        body = self.sample_body(rng, check_difficulty(difficulty))
        scratchpad, answer = self.solve(body)
        return Example(
            prompt=self.prefix + body,
            reference_response=scratchpad + ANSWER_DELIMITER + answer,
            answer=answer,
            task=self.name,
        )

    def body_of(self, prompt: str) -> str:
        """Strip this task's prefix from `prompt`, or raise PromptFormatError."""
        if not isinstance(prompt, str) or not prompt.startswith(self.prefix):
            raise PromptFormatError(self.name, prompt, self.prefix + self.body_form)
        return prompt[len(self.prefix) :]

    def reward(self, prompt_or_example: str | Example, response_text: object) -> float:
        """1.0 if the response's final answer is correct for the prompt, else 0.0.

        Only the text after the answer delimiter is graded; a missing or repeated delimiter
        is a format error and scores 0.0 like a wrong answer.
        """
        if isinstance(prompt_or_example, Example):
            if prompt_or_example.task != self.name:
                raise TaskMismatchError(self.name, prompt_or_example.task)
            prompt = prompt_or_example.prompt
        else:
            prompt = prompt_or_example
        body = self.body_of(prompt)
        answer = extract_answer(response_text)
        if answer is None:
            return 0.0
        return 1.0 if self.is_correct(body, answer) else 0.0

    def is_correct(self, body: str, answer: str) -> bool:
        """Exact match against the canonical answer; tasks with many right answers override."""
        return answer == self.solve(body)[1]

    @abstractmethod
    def sample_body(self, rng: random.Random, difficulty: int) -> str:
        """Draw a prompt body (the prompt without the prefix) using only `rng`."""

    @abstractmethod
    def solve(self, body: str) -> tuple[str, str]:
        """Return (scratchpad, answer) for a prompt body; raise PromptFormatError if malformed."""
