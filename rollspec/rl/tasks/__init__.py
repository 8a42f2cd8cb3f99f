"""Built-in verifiable tasks: seeded generators with scratchpad responses and exact rewards."""

from rollspec.rl.tasks.example import ANSWER_DELIMITER, Example, PromptFormatError, extract_answer
from rollspec.rl.tasks.registry import TASKS, UnknownTaskError, get_task, reward, task_for_prompt, task_names
from rollspec.rl.tasks.task import (
    DEFAULT_DIFFICULTY,
    MAX_DIFFICULTY,
    MIN_DIFFICULTY,
    DifficultyError,
    Task,
    TaskMismatchError,
)

__all__ = [
    "ANSWER_DELIMITER",
    "DEFAULT_DIFFICULTY",
    "MAX_DIFFICULTY",
    "MIN_DIFFICULTY",
    "TASKS",
    "DifficultyError",
    "Example",
    "PromptFormatError",
    "Task",
    "TaskMismatchError",
    "UnknownTaskError",
    "extract_answer",
    "get_task",
    "reward",
    "task_for_prompt",
    "task_names",
]
