"""Decisions from live numbers: acceptance, cost, speculation depth, admission. Pure logic (stdlib + numpy)."""

from rollspec.scheduler.acceptance import AcceptanceEstimator, sample_num_accepted
from rollspec.scheduler.admission import DROP_REASON_STALE, AdmissionController, AdmissionStats
from rollspec.scheduler.catch_up import CatchUpCost, excess_tokens
from rollspec.scheduler.config import (
    AcceptanceConfig,
    AdmissionConfig,
    CostConfig,
    DepthConfig,
    DepthMode,
    RealizedConfig,
)
from rollspec.scheduler.cost_model import CostModel, StepCostModel, batch_bucket, profile_points
from rollspec.scheduler.cost_profile import ProfileError
from rollspec.scheduler.decision import DepthDecision, DepthStats
from rollspec.scheduler.depth import DepthScheduler
from rollspec.scheduler.profiled import StepCostProfile, profiled_costs
from rollspec.scheduler.realized import RealizedCheck
from rollspec.scheduler.throughput import best_depth, expected_tokens, step_time_s, tokens_per_s

__all__ = [
    "AcceptanceConfig",
    "AcceptanceEstimator",
    "AdmissionConfig",
    "AdmissionController",
    "AdmissionStats",
    "CatchUpCost",
    "CostConfig",
    "CostModel",
    "DROP_REASON_STALE",
    "DepthConfig",
    "DepthDecision",
    "DepthMode",
    "DepthScheduler",
    "DepthStats",
    "ProfileError",
    "RealizedCheck",
    "RealizedConfig",
    "StepCostModel",
    "StepCostProfile",
    "batch_bucket",
    "best_depth",
    "excess_tokens",
    "expected_tokens",
    "profile_points",
    "profiled_costs",
    "sample_num_accepted",
    "step_time_s",
    "tokens_per_s",
]
