"""Reward functions the reward actor can call: the built-in task reward or a user `module:function`.

A user reward function takes `(prompt: str, response: str)` (the task prompt without special
tokens, the response up to its first <eos>) and returns a finite number. Whatever else happens
(it raises, hangs, returns NaN or a string) becomes a RewardOutcome with an error, never an
exception out of the scorer: the reward actor records it on the trajectory and keeps going.
"""

import importlib
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

from rollspec.rl.template import decode, decode_response
from rollspec.rl.vocab import BOS_ID, SEP_ID

BUILTIN = "builtin"


class RewardFunctionError(ValueError):
    """A reward function path that does not name an importable callable (a start-up error)."""

    def __init__(self, path: object, detail: str):
        super().__init__(f"reward.function {path!r}: {detail}; expected 'builtin' or 'package.module:function'")
        self.path, self.detail = path, detail


class RewardOutcome(NamedTuple):
    """The reward of one response, or why there is none (`error` non-empty, `value` then 0.0)."""

    value: float
    error: str

    @property
    def ok(self) -> bool:
        """True if there is a reward (no error)."""
        return not self.error


def load_reward_function(path: str) -> Callable[[str, str], object]:
    """Import `module:function` and return the callable; RewardFunctionError names what is wrong."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise RewardFunctionError(path, "not of the form 'module:function'")
    module_name, attr = path.split(":")
    if not module_name or not attr:
        raise RewardFunctionError(path, "empty module or function name")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code is a start-up error, reported as such
        raise RewardFunctionError(path, f"cannot import {module_name!r} ({type(exc).__name__}: {exc})") from exc
    fn = getattr(module, attr, None)
    if fn is None:
        raise RewardFunctionError(path, f"module {module_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise RewardFunctionError(path, f"{attr!r} is a {type(fn).__name__}, not a callable")
    return fn


def checked_value(value: object) -> RewardOutcome:
    """A returned reward as an outcome: finite int or float is a value, anything else an error."""
    if not isinstance(value, (int, float)):
        return RewardOutcome(0.0, f"returned a {type(value).__name__} ({_short(value)}), expected a number")
    value = float(value)
    if not math.isfinite(value):
        return RewardOutcome(0.0, f"returned {value}, expected a finite number")
    return RewardOutcome(value, "")


def texts_of(prompt_ids: Sequence[int], response_ids: Sequence[int]) -> tuple[str, str]:
    """(prompt, response) texts a reward function sees: the prompt without <bos>/<sep>, the response
    up to its first <eos>."""
    ids = list(prompt_ids)
    if len(ids) >= 2 and ids[0] == BOS_ID and ids[-1] == SEP_ID:
        ids = ids[1:-1]
    return decode(ids), decode_response(response_ids)


class InlineRewardFunction:
    """Calls a trusted function in this process (the built-in task reward). It cannot be interrupted,
    so it is used only for code that returns promptly by contract."""

    def __init__(self, fn: Callable[[str, str], object]):
        self._fn = fn

    def __call__(self, prompt: str, response: str) -> RewardOutcome:
        """The function's reward, or an outcome naming the exception it raised."""
        try:
            value = self._fn(prompt, response)
        except Exception as exc:  # a reward error is recorded on the trajectory, never raised
            return RewardOutcome(0.0, f"raised {type(exc).__name__}: {_short(exc)}")
        return checked_value(value)

    def close(self) -> None:
        """Nothing to release."""


def builtin_reward_function() -> InlineRewardFunction:
    """The built-in verifiable reward of rl/tasks, dispatched on the prompt's task prefix."""
    from rollspec.rl.tasks import reward

    return InlineRewardFunction(reward)


def _short(value: object, limit: int = 200) -> str:
    text = repr(value) if not isinstance(value, BaseException) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
