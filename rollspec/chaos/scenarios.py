"""The chaos scenarios: each one disturbance of the tiny run (tiny.py), and what is checked after it.

`setup` changes the run itself (and so also its undisturbed baseline); `faults` are injected
message faults (chaos.* overrides) and `kills` actor faults. `compare_weights`: the scenario leaves
the trained data unchanged, so the final learner state must equal the undisturbed run's (sync mode,
fixed seeds, a drafter that does not change: the draft-refresh actor distills on whatever arrives
first, so runs with it on are not compared).
"""

import dataclasses

from rollspec.chaos.schedule import Fault

NET_FAULTS = ("chaos.seed=1", "chaos.drop=0.1", "chaos.duplicate=0.05", "chaos.delay=0.1", "chaos.reorder=0.1")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One row of the scenario table."""

    name: str
    description: str
    setup: tuple[str, ...] = ()
    faults: tuple[str, ...] = ()
    kills: tuple[Fault, ...] = ()
    compare_weights: bool = True
    kill_driver_after_checkpoint: int = 0
    """> 0: run the driver as its own process and SIGKILL it once this checkpoint exists, then resume."""
    short: bool = False
    """Part of the default test suite's short subset."""


SCENARIOS = {s.name: s for s in [
    Scenario(name="rollout-kill", description="kill a rollout actor mid-generation (Ray restarts it; leases expire)",
             setup=("rollout.num_actors=2",), kills=(Fault(kind="kill_rollout", at_step=1, delay_s=0.4),)),
    Scenario(name="reward-kill", description="kill the reward actor (Ray restarts it; its leased records come back)",
             kills=(Fault(kind="kill_reward", at_step=1, delay_s=0.4),)),
    Scenario(name="refresh-kill", description="kill the draft-refresh actor (rollouts go on with the last draft)",
             setup=("draft_refresh.enabled=true",), kills=(Fault(kind="kill_refresh", at_step=1, delay_s=0.2),),
             compare_weights=False),
    Scenario(name="learner-kill", description="kill learner rank 0 mid-step; the run resumes from its checkpoint",
             kills=(Fault(kind="kill_learner", at_step=2, delay_s=0.3),)),
    Scenario(name="controller-kill", description="SIGKILL the driver (controller) process, then `train --resume`",
             kill_driver_after_checkpoint=2),
    Scenario(name="net-faults", description="drop 10% / duplicate 5% / delay 10% / reorder 10% of messages, "
                                            "every channel", faults=NET_FAULTS, short=True),
    Scenario(name="corrupt", description="flip a bit in 5% of messages on every channel",
             faults=("chaos.seed=2", "chaos.corrupt=0.05")),
    Scenario(name="straggler", description="one of two rollout actors 10x slower than the other",
             setup=("rollout.num_actors=2",), faults=("chaos.slow_rollouts=1", "chaos.slowdown=10.0")),
    Scenario(name="reward-faults", description="reward function raises, hangs (timeout 0.5 s) or returns NaN",
             setup=("reward.function=rollspec.chaos.rewards:flaky", "reward.timeout_s=0.5"),
             compare_weights=False),
    Scenario(name="refresh-faults", description="draft refresh on; its publisher, policy subscription and samples "
                                                "consumer (and every other endpoint) drop / duplicate / delay / "
                                                "reorder / corrupt messages",
             setup=("draft_refresh.enabled=true",), faults=(*NET_FAULTS, "chaos.corrupt=0.02"), compare_weights=False),
    Scenario(name="async-kills", description="async (staleness 1): net faults, a rollout and a reward kill",
             setup=("algorithm.max_staleness=1", "rollout.num_actors=2"), faults=NET_FAULTS,
             kills=(Fault(kind="kill_rollout", at_step=1, delay_s=0.2), Fault(kind="kill_reward", at_step=2)),
             compare_weights=False),
]}
