"""Reversing a short string of digits and letters: the short-response end of the mix.

Prompt `reversal:k3x9`; response `9,x,3,k#9x3k`: the characters read from the end, one at
a time, then the reversed string.
"""

import random
import re

from rollspec.rl.tasks.example import PromptFormatError
from rollspec.rl.tasks.task import Task
from rollspec.rl.vocab import DIGITS, LETTERS

# (min length, max length) per difficulty level.
LENGTH_BY_DIFFICULTY = {1: (2, 3), 2: (3, 5), 3: (3, 7), 4: (6, 10), 5: (8, 14)}
SYMBOLS = DIGITS + LETTERS
BODY = re.compile(r"[0-9a-z]{1,64}")


class ReversalTask(Task):
    """Reverse a string over [0-9a-z]; answer is the reversed string."""

    name = "reversal"
    body_form = "<[0-9a-z]+>"

    def sample_body(self, rng: random.Random, difficulty: int) -> str:
        """A random string whose length comes from the difficulty level."""
        lo, hi = LENGTH_BY_DIFFICULTY[difficulty]
        return "".join(rng.choice(SYMBOLS) for _ in range(rng.randint(lo, hi)))

    def solve(self, body: str) -> tuple[str, str]:
        """The characters from last to first, then the reversed string."""
        if BODY.fullmatch(body) is None:
            raise PromptFormatError(self.name, body, self.body_form)
        return ",".join(reversed(body)), body[::-1]
