"""The train / held-out split: a deterministic hash of the prompt text decides.

Hashing the prompt (not the seed) makes the split disjoint in content: two seeds that
happen to draw the same prompt land in the same split, so no evaluation prompt is ever
trained on. blake2b, unlike `hash()`, is identical in every process and on every machine.
"""

import enum
import hashlib

DEFAULT_EVAL_FRACTION = 0.1


class Split(enum.Enum):
    """Which side of the held-out split a dataset draws from."""

    TRAIN = "train"
    EVAL = "eval"


class EvalFractionError(ValueError):
    """An evaluation fraction outside the open interval (0, 1)."""

    def __init__(self, eval_fraction: object):
        super().__init__(f"eval_fraction must be a float in (0, 1), got {eval_fraction!r}")
        self.eval_fraction = eval_fraction


def check_eval_fraction(eval_fraction: object) -> float:
    """Return `eval_fraction` as a float if it lies in (0, 1), else raise EvalFractionError."""
    if isinstance(eval_fraction, bool) or not isinstance(eval_fraction, (int, float)):
        raise EvalFractionError(eval_fraction)
    if not 0.0 < eval_fraction < 1.0:
        raise EvalFractionError(eval_fraction)
    return float(eval_fraction)


def hash_unit(text: str) -> float:
    """A uniform-looking number in [0, 1) that depends only on `text`."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_of(prompt: str, eval_fraction: float = DEFAULT_EVAL_FRACTION) -> Split:
    """The split `prompt` belongs to: EVAL for about `eval_fraction` of all prompts."""
    return Split.EVAL if hash_unit(prompt) < check_eval_fraction(eval_fraction) else Split.TRAIN
