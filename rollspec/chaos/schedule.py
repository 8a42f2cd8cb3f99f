"""Fault schedules: which actor fault happens when (by learner step), fixed per scenario or drawn at
random from a seed for the soak."""

import dataclasses
import random

KILLS = ("kill_rollout", "kill_reward", "kill_refresh", "kill_learner", "crash_controller")
ENDS_RUN = ("kill_learner", "crash_controller")
"""Faults after which the run stops and is resumed from its last checkpoint."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """`kind` hits actor `target` (an index) `delay_s` seconds into learner step `at_step` (0-based)."""

    kind: str
    at_step: int
    delay_s: float = 0.3
    target: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KILLS:
            raise ValueError(f"fault kind {self.kind!r} is not one of {KILLS}")
        if self.at_step < 0 or self.delay_s < 0 or self.target < 0:
            raise ValueError(f"fault {self} needs at_step, delay_s and target >= 0")

    @property
    def target_name(self) -> str:
        return {"kill_rollout": f"rollout-{self.target}", "kill_reward": f"reward-{self.target}",
                "kill_refresh": "draft-refresh", "kill_learner": f"learner-rank-{self.target}",
                "crash_controller": "controller"}[self.kind]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SoakDraw:
    """One soak seed's disturbance: config overrides (mode, message faults) and actor faults."""

    seed: int
    overrides: tuple[str, ...]
    faults: tuple[Fault, ...]


def draw(seed: int, *, steps: int) -> SoakDraw:
    """A random disturbance of a `steps`-step run: sync or async, message faults on every channel at
    random rates, and one to three actor faults at random steps (at most one that ends the run)."""
    rng = random.Random(seed)
    staleness = rng.choice((0, 1))
    rates = {"drop": rng.uniform(0, 0.1), "duplicate": rng.uniform(0, 0.05), "delay": rng.uniform(0, 0.1),
             "reorder": rng.uniform(0, 0.1), "corrupt": rng.uniform(0, 0.02)}
    overrides = [f"algorithm.max_staleness={staleness}", "rollout.num_actors=2", "draft_refresh.enabled=true",
                 f"chaos.seed={seed}", *(f"chaos.{name}={rate:.4f}" for name, rate in rates.items())]
    faults, ended = [], False
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(KILLS)
        if kind in ENDS_RUN:
            if ended:
                kind = "kill_rollout"
            ended = True
        faults.append(Fault(kind=kind, at_step=rng.randrange(1, steps), delay_s=round(rng.uniform(0.0, 1.5), 2),
                            target=rng.randrange(2)))
    return SoakDraw(seed=seed, overrides=tuple(overrides), faults=tuple(faults))
