"""Multi-digit multiplication with one partial product per digit of the multiplier.

Prompt `multiplication:347*26`; response `347*6=2082,347*20=6940,2082+6940=9022#9022`:
partial products for each multiplier digit (least significant first, shifted by its place
value, zero digits included so every prompt of a shape has the same steps), then their sum
when there is more than one.
"""

import random
import re

from rollspec.rl.tasks.example import PromptFormatError
from rollspec.rl.tasks.task import Task, random_number

# Digit counts (lo, hi) of the multiplicand and the multiplier per difficulty level.
MULTIPLICAND_DIGITS = {1: (1, 2), 2: (2, 2), 3: (2, 3), 4: (3, 4), 5: (3, 5)}
MULTIPLIER_DIGITS = {1: (1, 1), 2: (1, 1), 3: (1, 2), 4: (2, 2), 5: (2, 3)}
MAX_DIGITS = 12  # bounds the scratchpad of a hand-written prompt
BODY = re.compile(rf"(\d{{1,{MAX_DIGITS}}})\*(\d{{1,{MAX_DIGITS}}})")


class MultiplicationTask(Task):
    """`a*b` for non-negative integers; answer is the decimal product without leading zeros."""

    name = "multiplication"
    body_form = "<digits>*<digits>"

    def sample_body(self, rng: random.Random, difficulty: int) -> str:
        """A multiplicand and a (shorter or equal) multiplier from the difficulty's ranges."""
        a = random_number(rng, rng.randint(*MULTIPLICAND_DIGITS[difficulty]))
        b = random_number(rng, rng.randint(*MULTIPLIER_DIGITS[difficulty]))
        return f"{a}*{b}"

    def solve(self, body: str) -> tuple[str, str]:
        """Shifted partial products, their sum, then the product."""
        match = BODY.fullmatch(body)
        if match is None:
            raise PromptFormatError(self.name, body, self.body_form)
        a, b = int(match[1]), match[2]
        steps, partials = [], []
        for place, digit in enumerate(reversed(b)):
            factor = int(digit) * 10**place
            partials.append(a * factor)
            steps.append(f"{a}*{factor}={a * factor}")
        if len(partials) > 1:
            steps.append("+".join(map(str, partials)) + f"={sum(partials)}")
        return ",".join(steps), str(a * int(b))
