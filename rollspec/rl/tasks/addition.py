"""Multi-digit addition with a column-by-column scratchpad.

Prompt `addition:347+86`; response `7+6+0=13,4+8+1=13,3+0+1=4#433`: each column, least
significant first, shows both digits, the incoming carry and the column sum, whose tens
digit is the next carry. Every column looks alike, which keeps it predictable.
"""

import random
import re

from rollspec.rl.tasks.example import PromptFormatError
from rollspec.rl.tasks.task import Task, random_number

# Operand digit counts (lo, hi) per difficulty level.
DIGITS_BY_DIFFICULTY = {1: (1, 2), 2: (1, 3), 3: (2, 4), 4: (3, 6), 5: (4, 8)}
MAX_DIGITS = 30  # bounds the scratchpad of a hand-written prompt
BODY = re.compile(rf"(\d{{1,{MAX_DIGITS}}})\+(\d{{1,{MAX_DIGITS}}})")


class AdditionTask(Task):
    """`a+b` for non-negative integers; answer is the decimal sum without leading zeros."""

    name = "addition"
    body_form = "<digits>+<digits>"

    def sample_body(self, rng: random.Random, difficulty: int) -> str:
        """Two operands whose digit counts are drawn from the difficulty's range."""
        lo, hi = DIGITS_BY_DIFFICULTY[difficulty]
        return f"{random_number(rng, rng.randint(lo, hi))}+{random_number(rng, rng.randint(lo, hi))}"

    def solve(self, body: str) -> tuple[str, str]:
        """Column sums with carries, then the sum."""
        match = BODY.fullmatch(body)
        if match is None:
            raise PromptFormatError(self.name, body, self.body_form)
        a, b = match.groups()
        width = max(len(a), len(b))
        a_digits, b_digits = a.zfill(width)[::-1], b.zfill(width)[::-1]
        columns, carry = [], 0
        for x, y in zip(a_digits, b_digits):
            total = int(x) + int(y) + carry
            columns.append(f"{x}+{y}+{carry}={total}")
            carry = total // 10
        return ",".join(columns), str(int(a) + int(b))
