"""Built-in tasks by name, and reward dispatch by prompt prefix."""

from types import MappingProxyType

from rollspec.rl.tasks.addition import AdditionTask
from rollspec.rl.tasks.countdown import CountdownTask
from rollspec.rl.tasks.example import Example
from rollspec.rl.tasks.multiplication import MultiplicationTask
from rollspec.rl.tasks.reversal import ReversalTask
from rollspec.rl.tasks.sorting import SortingTask
from rollspec.rl.tasks.task import Task

# Read-only and built from stateless tasks, so sharing it is not shared mutable state.
TASKS = MappingProxyType(
    {task.name: task for task in (AdditionTask(), MultiplicationTask(), SortingTask(), ReversalTask(), CountdownTask())}
)


class UnknownTaskError(KeyError):
    """A task name, or a prompt prefix, that no registered task owns."""

    def __init__(self, what: object):
        super().__init__(f"no task for {what!r}; known tasks: {sorted(TASKS)}")
        self.what = what


def task_names() -> tuple[str, ...]:
    """Registered task names in registration order (stable, used to seed mixtures)."""
    return tuple(TASKS)


def get_task(name: str) -> Task:
    """The task registered as `name`, or UnknownTaskError."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise UnknownTaskError(name) from None


def task_for_prompt(prompt: str) -> Task:
    """The task whose prefix starts `prompt`, or UnknownTaskError."""
    if isinstance(prompt, str):
        for task in TASKS.values():
            if prompt.startswith(task.prefix):
                return task
    raise UnknownTaskError(prompt)


def reward(prompt_or_example: str | Example, response_text: object) -> float:
    """Grade a response with the task that owns the prompt (see `Task.reward`)."""
    if isinstance(prompt_or_example, Example):
        return get_task(prompt_or_example.task).reward(prompt_or_example, response_text)
    return task_for_prompt(prompt_or_example).reward(prompt_or_example, response_text)
