"""Reward functions of the chaos runs (reward.function=rollspec.chaos.rewards:NAME).

`hashed` gives every response a reproducible reward in [0, 1) from a hash of its text: the tiny
random policy never solves a task, so the task reward would be 0 everywhere, every GRPO advantage
0 and the weights would not move, which would make "same weights as the undisturbed run" prove
nothing. `flaky` (scenario reward-faults) fails on purpose for a fixed share of responses.
"""

import math
import time
import zlib


def hashed(prompt: str, response: str) -> float:
    """A reward in [0, 1) that is a pure function of (prompt, response)."""
    return (zlib.crc32((prompt + "\x00" + response).encode()) % 1000) / 1000.0


def flaky(prompt: str, response: str) -> float:
    """`hashed`, except: 1 in 6 responses raise, 1 in 6 hang for 60 s, 1 in 12 return NaN."""
    kind = zlib.crc32((prompt + response).encode()) % 12
    if kind in (0, 1):
        raise ValueError("chaos: reward function raised")
    if kind in (2, 3):
        time.sleep(60.0)
    if kind == 4:
        return math.nan
    return hashed(prompt, response)
