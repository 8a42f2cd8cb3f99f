"""The depth scheduler's cost models from a start-up profile (engine.profiling.CostProfile, read by its fields)."""

from collections.abc import Mapping
from typing import Protocol

from rollspec.scheduler.catch_up import CatchUpCost
from rollspec.scheduler.cost_model import CostModel


class StepCostProfile(Protocol):
    """Measured seconds: target_s[(B, q)] per verify forward; at each B, drafting per position (draft_s) and per
    speculative step beside it (draft_fixed_s, may be empty), and per token of excess catch-up width (catch_up_s)."""

    @property
    def target_s(self) -> Mapping[tuple[int, int], float]: ...

    @property
    def draft_s(self) -> Mapping[int, float]: ...

    @property
    def draft_fixed_s(self) -> Mapping[int, float]: ...

    @property
    def catch_up_s(self) -> Mapping[int, float]: ...


def profiled_costs(profile: StepCostProfile) -> tuple[CostModel, CatchUpCost]:
    """The step and catch-up cost models a DepthScheduler plans with, from the profile's measurements (no catch-up
    measured: none priced)."""
    cost = CostModel.from_profile(profile.target_s, profile.draft_s, draft_fixed_s=profile.draft_fixed_s)
    return cost, CatchUpCost(profile.catch_up_s) if profile.catch_up_s else CatchUpCost.none()
