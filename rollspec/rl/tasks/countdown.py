"""Countdown: reach a target by combining every given number once with + - *.

Prompt `countdown:20 from 2,3,4`; response `2+3=5,5*4=20#(2+3)*4`. The reference is the
first left-to-right chain found by a fixed search order (permutations of the sorted
numbers, then operators in `+ - *` order) whose running values stay in [0, MAX_VALUE], so
it is a function of the prompt alone. Any expression that uses exactly the given numbers
and evaluates to the target earns the reward, not only the reference one.
"""

import itertools
import random
import re
from collections import Counter

from rollspec.rl.tasks.example import PromptFormatError
from rollspec.rl.tasks.expression import evaluate
from rollspec.rl.tasks.task import Task

# (min count, max count, max number) per difficulty level.
SHAPE_BY_DIFFICULTY = {1: (2, 2, 9), 2: (2, 3, 9), 3: (3, 3, 15), 4: (3, 4, 20), 5: (4, 4, 25)}
MAX_VALUE = 999  # running values above this make the arithmetic, not the search, the hard part
MAX_NUMBERS = 5  # bounds the search of a hand-written prompt: 5! * 3^4 chains
OPERATORS = "+-*"
BODY = re.compile(rf"(\d{{1,4}}) from (\d{{1,4}}(?:,\d{{1,4}}){{1,{MAX_NUMBERS - 1}}})")


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _chain(numbers: tuple[int, ...], ops: tuple[str, ...]) -> list[int] | None:
    """Running values of ((n0 op0 n1) op1 n2)..., or None if one leaves [0, MAX_VALUE]."""
    values = [numbers[0]]
    for op, n in zip(ops, numbers[1:]):
        values.append(_apply(values[-1], op, n))
        if not 0 <= values[-1] <= MAX_VALUE:
            return None
    return values


def _expression(numbers: tuple[int, ...], ops: tuple[str, ...]) -> str:
    """The chain as an infix expression with only the parentheses precedence requires."""
    text, is_sum = str(numbers[0]), False
    for op, n in zip(ops, numbers[1:]):
        if op == "*" and is_sum:
            text = f"({text})"
        text, is_sum = f"{text}{op}{n}", op != "*"
    return text


class CountdownTask(Task):
    """Combine all given numbers (each exactly once) with + - * to hit the target."""

    name = "countdown"
    body_form = "<target> from <n>,<n>,..."

    def sample_body(self, rng: random.Random, difficulty: int) -> str:
        """Numbers and a random chain over them; the chain's result becomes the target."""
        lo, hi, max_number = SHAPE_BY_DIFFICULTY[difficulty]
        count = rng.randint(lo, hi)
        while True:  # rejection loop: few draws leave [0, MAX_VALUE], so this ends quickly
            numbers = [rng.randint(1, max_number) for _ in range(count)]
            ops = tuple(rng.choice(OPERATORS) for _ in range(count - 1))
            values = _chain(tuple(numbers), ops)
            if values is not None:
                return f"{values[-1]} from {','.join(map(str, sorted(numbers)))}"

    def _parse(self, body: str) -> tuple[int, tuple[int, ...]]:
        match = BODY.fullmatch(body)
        if match is None:
            raise PromptFormatError(self.name, body, self.body_form)
        return int(match[1]), tuple(sorted(int(n) for n in match[2].split(",")))

    def solve(self, body: str) -> tuple[str, str]:
        """The first chain in search order that reaches the target, as steps and expression."""
        target, numbers = self._parse(body)
        for perm in itertools.permutations(numbers):
            for ops in itertools.product(OPERATORS, repeat=len(numbers) - 1):
                values = _chain(perm, ops)
                if values is not None and values[-1] == target:
                    steps = [f"{values[i]}{op}{perm[i + 1]}={values[i + 1]}" for i, op in enumerate(ops)]
                    return ",".join(steps), _expression(perm, ops)
        raise PromptFormatError(self.name, body, "a target reachable by a chain with values in [0, 999]")

    def is_correct(self, body: str, answer: str) -> bool:
        """True if `answer` uses exactly the given numbers and evaluates to the target."""
        target, numbers = self._parse(body)
        result = evaluate(answer)
        if result is None:
            return False
        value, literals = result
        return value == target and Counter(literals) == Counter(numbers)
