"""Sorting a list of numbers, building the sorted list one element at a time.

Prompt `sorting:5,12,3,9`; response `3;3,5;3,5,9#3,5,9,12`: each step repeats the sorted
prefix so far and appends the smallest remaining number. The repetition is what makes the
working long (quadratic in the list length) and very predictable token by token.
"""

import random
import re

from rollspec.rl.tasks.example import PromptFormatError
from rollspec.rl.tasks.task import Task

# (min count, max count, max value) per difficulty level.
SHAPE_BY_DIFFICULTY = {1: (2, 3, 9), 2: (3, 4, 99), 3: (3, 8, 99), 4: (5, 9, 99), 5: (6, 9, 999)}
MAX_ITEMS = 32  # bounds the quadratic scratchpad of a hand-written prompt
BODY = re.compile(rf"\d{{1,6}}(?:,\d{{1,6}}){{0,{MAX_ITEMS - 1}}}")


class SortingTask(Task):
    """Sort non-negative integers ascending (duplicates kept); answer is comma-separated."""

    name = "sorting"
    body_form = "<int>,<int>,..."

    def sample_body(self, rng: random.Random, difficulty: int) -> str:
        """A list whose length and value range come from the difficulty level."""
        lo, hi, max_value = SHAPE_BY_DIFFICULTY[difficulty]
        return ",".join(str(rng.randint(0, max_value)) for _ in range(rng.randint(lo, hi)))

    def solve(self, body: str) -> tuple[str, str]:
        """Sorted prefixes of growing length, then the sorted list."""
        if BODY.fullmatch(body) is None:
            raise PromptFormatError(self.name, body, self.body_form)
        ordered = [str(n) for n in sorted(int(item) for item in body.split(","))]
        prefixes = [",".join(ordered[:i]) for i in range(1, len(ordered))]
        return ";".join(prefixes), ",".join(ordered)
