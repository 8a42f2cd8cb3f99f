"""How a simulated replica speculates: plain, a fixed depth (as vLLM runs it), or the scheduler's adaptive depth."""

from enum import StrEnum

from rollspec.scheduler import CostModel, DepthConfig, DepthMode, DepthScheduler, profile_points
from rollspec.sim.step_cost import StepCost


class Speculation(StrEnum):
    """PLAIN decodes one token per step; FIXED always drafts fixed_k; ADAPTIVE lets DepthScheduler pick k per step."""

    PLAIN = "plain"
    FIXED = "fixed"
    ADAPTIVE = "adaptive"


def depth_policy(mode: Speculation, *, fixed_k: int, k_max: int, belief: CostModel | StepCost) -> DepthScheduler:
    """The scheduler's depth policy for `mode`, planning on `belief`.

    Every mode is the real DepthScheduler, so the simulated k comes from the same code
    (greedy argmax of E[tokens | k] / step_s(k), hysteresis, probes, online cost correction)
    that runs in the engine. `belief` is what the scheduler thinks steps cost: normally a
    start-up profile (`startup_cost_model`) that the simulated step times then correct,
    exactly as the engine's measured times correct the live one.
    """
    if mode is Speculation.PLAIN:
        config = DepthConfig(k_max=0)
    elif mode is Speculation.FIXED:
        config = DepthConfig(k_max=fixed_k, mode=DepthMode.FIXED)
    else:
        config = DepthConfig(k_max=k_max)
    # The scheduler types its cost as CostModel; it only calls step_s and observe, which a StepCost has too.
    return DepthScheduler(config, belief)  # type: ignore[arg-type]


def startup_cost_model(truth: StepCost, *, max_batch_size: int, k_max: int, context_tokens: float) -> CostModel:
    """What the live scheduler measures at start-up: `truth` on the scheduler's profile grid at one context.

    The profile is taken with short contexts, so as rollouts grow the live model is wrong
    until its online correction catches up; simulating that is part of the point.
    """
    batch_sizes, qs = profile_points(max_batch_size, k_max)
    truth.set_context(context_tokens, context_tokens)
    target = {(b, q): truth.target_s(b, q) for b in batch_sizes for q in qs}
    return CostModel.from_profile(target, {b: truth.draft_s(b) for b in batch_sizes})
