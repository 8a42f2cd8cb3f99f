"""How a simulated replica speculates: plain, a fixed depth (as vLLM runs it), or the scheduler's adaptive depth."""

from enum import StrEnum

from rollspec.scheduler import DepthConfig, DepthMode, DepthScheduler
from rollspec.sim.step_cost import StepCost


class Speculation(StrEnum):
    """PLAIN decodes one token per step; FIXED always drafts fixed_k; ADAPTIVE lets DepthScheduler pick k per step."""

    PLAIN = "plain"
    FIXED = "fixed"
    ADAPTIVE = "adaptive"


def depth_policy(mode: Speculation, *, fixed_k: int, k_max: int, cost: StepCost) -> DepthScheduler:
    """The scheduler's depth policy for `mode`, planning on `cost` (the simulation's truth).

    Every mode is the real DepthScheduler, so the simulated k comes from the same code
    (greedy argmax of E[tokens | k] / step_s(k), hysteresis, probes) that runs in the engine.
    """
    if mode is Speculation.PLAIN:
        config = DepthConfig(k_max=0)
    elif mode is Speculation.FIXED:
        config = DepthConfig(k_max=fixed_k, mode=DepthMode.FIXED)
    else:
        config = DepthConfig(k_max=k_max)
    # The scheduler types its cost as CostModel; it only calls step_s and observe, which StepCost has.
    return DepthScheduler(config, cost)  # type: ignore[arg-type]
