"""The three-way split of prompt space: a deterministic hash of the prompt text decides.

EVAL prompts are held out from all training (the zoo's accuracy, the driver's before/after
reward); RL prompts are what GRPO trains on; TRAIN prompts are what the zoo policy was SFT'd on.
RL is kept apart from TRAIN because the zoo policy memorizes much of the small difficulty-1
prompt space during SFT (countdown has 134 distinct prompts, multiplication 1000): GRPO on its
SFT prompts would mostly see groups it already answers, and a reward curve there says little.

Hashing the prompt (not the seed) makes the split disjoint in content: two seeds that
happen to draw the same prompt land in the same split, so no evaluation prompt is ever
trained on. blake2b, unlike `hash()`, is identical in every process and on every machine.
The regions are [0, eval) EVAL, [eval, eval + rl) RL, the rest TRAIN; with the defaults TRAIN
is exactly the region the zoo was built from before the RL region existed (hash >= 0.1).
"""

import enum
import hashlib

DEFAULT_EVAL_FRACTION = 0.05
DEFAULT_RL_FRACTION = 0.05


class Split(enum.Enum):
    """Which side of the held-out split a dataset draws from."""

    TRAIN = "train"
    RL = "rl"
    EVAL = "eval"


class EvalFractionError(ValueError):
    """A split fraction outside the open interval (0, 1), or EVAL + RL shares leaving no TRAIN."""

    def __init__(self, eval_fraction: object, name: str = "eval_fraction", expected: str = "a float in (0, 1)"):
        super().__init__(f"{name} must be {expected}, got {eval_fraction!r}")
        self.eval_fraction = eval_fraction


def check_eval_fraction(eval_fraction: object, name: str = "eval_fraction") -> float:
    """Return `eval_fraction` as a float if it lies in (0, 1), else raise EvalFractionError."""
    if isinstance(eval_fraction, bool) or not isinstance(eval_fraction, (int, float)):
        raise EvalFractionError(eval_fraction, name)
    if not 0.0 < eval_fraction < 1.0:
        raise EvalFractionError(eval_fraction, name)
    return float(eval_fraction)


def check_fractions(eval_fraction: object, rl_fraction: object) -> tuple[float, float]:
    """Both shares, each in (0, 1), with some prompt space left for TRAIN."""
    eval_share, rl_share = check_eval_fraction(eval_fraction), check_eval_fraction(rl_fraction, "rl_fraction")
    if eval_share + rl_share >= 1.0:
        raise EvalFractionError((eval_share, rl_share), "eval_fraction + rl_fraction", "< 1")
    return eval_share, rl_share


def hash_unit(text: str) -> float:
    """A uniform-looking number in [0, 1) that depends only on `text`."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_of(prompt: str, eval_fraction: float = DEFAULT_EVAL_FRACTION,
             rl_fraction: float = DEFAULT_RL_FRACTION) -> Split:
    """The split `prompt` belongs to: EVAL for about `eval_fraction` of all prompts, RL for about
    `rl_fraction`, TRAIN for the rest."""
    eval_share, rl_share = check_fractions(eval_fraction, rl_fraction)
    u = hash_unit(prompt)
    return Split.EVAL if u < eval_share else Split.RL if u < eval_share + rl_share else Split.TRAIN
