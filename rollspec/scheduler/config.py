"""Config of the scheduler cores. Built by launch/ from validated user config; asserts only invariants."""

from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptanceConfig:
    """How the per-position acceptance estimate weighs old evidence against new.

    Evidence from m steps ago counts 0.5 ** (m / half_life_steps) relative to this step's.
    A position never observed reads as `prior_alpha`; `prior_weight` is how many rows the
    prior is worth. It is kept below one row: at batch size 1 a position holds only about
    1.44 * half_life_steps rows of evidence, and a heavier prior would keep a position that
    never accepts looking a few percent useful, enough to make speculation look worth it
    where it loses.
    """

    half_life_steps: float = 16.0
    prior_alpha: float = 0.6
    prior_weight: float = 0.5

    def __post_init__(self) -> None:
        assert self.half_life_steps > 0, self.half_life_steps
        assert 0.0 <= self.prior_alpha <= 1.0, self.prior_alpha
        assert self.prior_weight > 0, self.prior_weight


@dataclass(frozen=True, slots=True, kw_only=True)
class CostConfig:
    """Online refinement of the profiled step costs.

    Corrections are multiplicative and learned in log space: each observed step moves the
    log-corrections of its batch-size bucket (see CostModel) by `correction_rate` times the
    log error, the error first clipped to +-`max_log_error` so one stalled step (GC, page
    fault) cannot swing the model.
    """

    correction_rate: float = 0.1
    max_log_error: float = 0.5

    def __post_init__(self) -> None:
        assert 0.0 < self.correction_rate <= 1.0, self.correction_rate
        assert self.max_log_error > 0, self.max_log_error


@dataclass(frozen=True, slots=True, kw_only=True)
class RealizedConfig:
    """The check of speculation against plain decoding by realized vs predicted step times (see RealizedCheck).

    - `rate`: weight of the newest step in each running mean (a plain mean for the first 1 / rate steps).
    - `min_steps`: steps each of plain and speculative decoding a bucket needs before it is judged.
    - `z`: standard errors of the difference by which speculation must trail to be called losing;
      it is checked every step, so this is set well above the 2 of a one-off test.
    - `min_gap`: and by at least this much (log tokens/s), so noiseless timings cannot turn a
      transient miss of a fraction of a percent into a verdict.
    - `plain_check_interval_steps`: while speculating, one plain step this often keeps the plain
      side measured (eight times as often until it has min_steps).
    - `veto_steps`: speculative evidence this many steps old is dropped (and a verdict resting on it).
    """

    rate: float = 1.0 / 16.0
    min_steps: int = 6
    z: float = 3.0
    min_gap: float = 0.03
    plain_check_interval_steps: int = 64
    veto_steps: int = 512

    def __post_init__(self) -> None:
        assert 0.0 < self.rate <= 1.0, self.rate
        assert self.min_steps >= 1, self.min_steps
        assert self.z >= 0, self.z
        assert self.min_gap >= 0, self.min_gap
        assert self.plain_check_interval_steps >= 1, self.plain_check_interval_steps
        assert self.veto_steps >= 1, self.veto_steps


class DepthMode(StrEnum):
    """ADAPTIVE picks k in [0, k_max] every step; FIXED always drafts k_max tokens."""

    ADAPTIVE = "adaptive"
    FIXED = "fixed"


@dataclass(frozen=True, slots=True, kw_only=True)
class DepthConfig:
    """Speculation depth policy.

    - `hysteresis`: keep the current k unless another k is predicted faster by more than
      this fraction (noise in the estimates must not flip k every step); never used to keep
      a k predicted slower than plain decoding.
    - `probe_interval_steps`: a draft position not scheduled for this many steps may be
      probed (one step at a deeper k) when it could pay were it accepted every time. The
      long-run fraction of probe steps is at most 1 / probe_interval_steps, with bursts of
      at most k_max probes (a recovery sweep).
    - `start_gain`: leave plain decoding (k = 0) only for a k predicted faster by more than
      this fraction, its catch-up included: a margin for what the catch-up model misses
      (`hysteresis` where the drafter has nothing to catch up).
    - `catch_up_horizon_steps`: leaving k = 0 charges the drafter's catch-up on the tokens
      emitted at k = 0 (see CatchUpCost) spread over this many steps, the ones expected to
      follow at the new depth, or over fewer if the batch is draining
      (DepthScheduler.horizon_steps); a probe from k = 0 pays all of it. Short: the catch-up
      of a prompt-long width at a large batch costs several plain steps.
    - `probe_min_gain`: probe only a depth that, with its unexplored positions always
      accepted, would be faster than the current k by more than this fraction. A probe's
      payoff is bounded by that gain; where the bound is thin (large batches, where a verify
      step costs nearly (k + 1) plain steps) the probe costs more than it can reveal. Measured
      on the zoo's draining batch: probes at B = 60-64 cost 3-5 plain steps each. Not applied
      in the k_max steps after a weight change.
    - `explore_budget`: from k > 0 a probe is a trial at a deeper depth whose evidence is old (ProbePlanner); the
      trials' predicted loss against k is at most this fraction of the steps' time (0: no such trials).
    - `min_evidence_rows`: until this many (discounted) rows have attempted a position, it is
      planned with at least the prior acceptance, so one unlucky rejection at batch size 1
      cannot write a position off.
    - `weight_change_keep`: on a policy or draft weight change, acceptance evidence is
      scaled by this factor so the new weights' behaviour dominates sooner.
    - `history_len`: how many recent decisions are kept for logging / export.
    - `replan_interval_steps`: a greedy choice is reused for up to this many steps at the same
      batch size (1: planned every step); see DepthScheduler.
    - `max_replan_interval_steps`: a speculative choice that later plans confirmed stands longer, doubling per
      confirming plan up to this many steps (and two acceptance half-lives), unless its steps accept fewer
      drafts than planned (standing.standing_steps, standing.AcceptanceWatch).
    - `realized`: the check against realized throughput; `check_realized` turns it off.
    - `settle_steps`: the plain steps right after a speculative one do not teach the cost model (they
      cost 1.2-1.6x a plain step in a run of plain steps on the zoo).
    - `plan_first_steps`: at batch size 1 a response's first speculative step runs at a depth planned with its own
      acceptance (fresh.FirstSteps); off, it is planned and learned from as any other step.
    """

    k_max: int = 8
    mode: DepthMode = DepthMode.ADAPTIVE
    hysteresis: float = 0.03
    probe_interval_steps: int = 128
    start_gain: float = 0.15
    catch_up_horizon_steps: float = 8.0
    probe_min_gain: float = 0.1
    explore_budget: float = 0.01
    min_evidence_rows: float = 4.0
    weight_change_keep: float = 0.25
    history_len: int = 1024
    replan_interval_steps: int = 4
    max_replan_interval_steps: int = 32
    acceptance: AcceptanceConfig = field(default_factory=AcceptanceConfig)
    check_realized: bool = True
    realized: RealizedConfig = field(default_factory=RealizedConfig)
    settle_steps: int = 4
    plan_first_steps: bool = True

    def __post_init__(self) -> None:
        assert self.k_max >= 0, self.k_max
        assert self.hysteresis >= 0, self.hysteresis
        assert self.probe_interval_steps >= 1, self.probe_interval_steps
        assert self.probe_min_gain >= 0, self.probe_min_gain
        assert self.explore_budget >= 0, self.explore_budget
        assert self.start_gain >= 0, self.start_gain
        assert self.catch_up_horizon_steps > 0, self.catch_up_horizon_steps
        assert self.min_evidence_rows >= 0, self.min_evidence_rows
        assert 0.0 <= self.weight_change_keep <= 1.0, self.weight_change_keep
        assert self.history_len >= 1, self.history_len
        assert self.replan_interval_steps >= 1, self.replan_interval_steps
        assert self.max_replan_interval_steps >= 1, self.max_replan_interval_steps
        assert self.settle_steps >= 0, self.settle_steps


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmissionConfig:
    """Bounded staleness: a trajectory of policy version v may train in learner step t iff t - v <= max_staleness.

    One learner step consumes prompts_per_step * group_size trajectories.
    """

    max_staleness: int = 0
    prompts_per_step: int
    group_size: int = 1

    def __post_init__(self) -> None:
        assert self.max_staleness >= 0, self.max_staleness
        assert self.prompts_per_step >= 1, self.prompts_per_step
        assert self.group_size >= 1, self.group_size
