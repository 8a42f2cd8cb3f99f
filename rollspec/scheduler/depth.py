"""Speculation depth per step: the k that maximizes predicted emitted tokens per second, from live estimates."""

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from rollspec.scheduler.acceptance import AcceptanceEstimator
from rollspec.scheduler.catch_up import CatchUpCost, catch_up_horizon, excess_at, observe_step_costs
from rollspec.scheduler.config import DepthConfig, DepthMode
from rollspec.scheduler.cost_model import StepCostModel
from rollspec.scheduler.decision import DecisionLog, DepthDecision, DepthStats, Entry, plain_runs
from rollspec.scheduler.fresh import FirstStepRecords, FirstSteps
from rollspec.scheduler.hysteresis import hysteresis_depth
from rollspec.scheduler.neighbour import NeighbourArbiter
from rollspec.scheduler.plain_run import PlainRun
from rollspec.scheduler.plan_prices import PlanPrices
from rollspec.scheduler.probe import TRIAL_STEPS, ProbePlanner
from rollspec.scheduler.realized import RealizedCheck
from rollspec.scheduler.realized_gain import RealizedGain
from rollspec.scheduler.standing import AcceptanceWatch, DrainStand, PlainLease, StandingChoice, standing_steps
from rollspec.scheduler.steady import CatchUpSplit, SteadyRecords, SteadyRun
from rollspec.scheduler.throughput import expected_token_list

# Weight of the newest step in the mean excess catch-up width of steady speculation (admissions
# come and go with the batch; a few steps of memory follow them).
RECURRING_RATE = 0.25
# Weight of the newest step in the mean rows finished per step while the batch shrinks (finishes
# come in bursts: one step ends many responses of the same length, the next none).
DRAIN_RATE = 0.3


class DepthScheduler:
    """Chooses the draft depth k in [0, k_max] before every step, for one drafter.

    Call `choose_depth(B, catch_up_tokens)` before drafting and `observe(...)` after verifying (the engine's two
    hooks). In ADAPTIVE mode the choice is, in order (0: at B = 1 a response's first step, while speculating, runs at
    a depth planned with first steps' own acceptance, and is kept apart from what follows: fresh.FirstSteps):

    1. greedy: argmax over k of E[tokens | k] / (c_draft(B, k) + c_target(B, k + 1)), with the cost estimates as
       they stand and the acceptance of `planning_alphas()` (the estimate, at least the prior for a position fewer
       than min_evidence_rows rows have tried); from k = 0 the step cost also carries the drafter's catch-up
       (CatchUpCost) spread over `catch_up_horizon_steps`: leaving plain decoding must pay for it;
    2. hysteresis: the previous greedy k is kept unless the argmax beats it by more than `hysteresis`
       (`start_gain` when leaving k = 0), and never kept when predicted slower than k = 0; then (2b, RealizedGain,
       not in a drain) a plain choice becomes the depth whose steps realized most tokens/s at this batch size if
       they realized more than plain steps there, whatever the prediction; 2c, and its trials: NeighbourArbiter;
    3. probe (ProbePlanner): from k = 0, if position 1 has not run for `probe_interval_steps` steps (longer where
       its catch-up and trial make a probe dear: PROBE_BUDGET), a credit is available (one per interval, at most
       k_max banked), and some depth would beat plain by more than `probe_min_gain` (no margin in the k_max steps
       after a weight change) were its positions always accepted (its catch-up spread as in 1), the shallowest such
       depth; from a k > 0 that ran last step at B, a deeper depth whose positions have not run for the interval,
       within a budget of predicted loss (`explore_budget`). Either stands TRIAL_STEPS steps; greedy k stays.
    4. realized check (`check_realized`), before any probe: a k > 0 becomes 0 where speculative steps realized
       fewer tokens/s than plain ones at this batch size's bucket beyond noise, by each prediction corrected by how
       far steps of its kind fell from it there (RealizedCheck). While speculating, a plain step every so often
       keeps plain's side measured. A veto stands as a plain choice does (a plan per vetoed step ran ~100 steps
       after a probe at B = 64, zoo).

    A greedy choice stands for some steps while the batch and the catch-up offered stay (standing_steps). A
    draining batch spreads the catch-up over the steps it is expected to have left, if fewer (`horizon_steps`),
    and neither leaves nor is probed from k = 0 then (DrainStand).

    Once speculating, this step's catch-up is not charged to the choice: it is paid whenever the drafter next
    drafts (stepping down to k = 0 only defers and grows it). Charged to every k > 0 is the catch-up that recurs
    while speculating (admitted rows bring their prompts): the mean excess width of recent steady speculative
    steps (zoo, steady B = 128: ~2 plain steps a step). Without step 3 bad acceptance would lock k at 0 for good.
    """

    def __init__(self, config: DepthConfig, cost_model: StepCostModel, catch_up: CatchUpCost | None = None) -> None:
        self._config = config
        self._cost = cost_model
        self._catch_up = catch_up or CatchUpCost.none()
        self._offered_catch_up = 0  # the catch-up width of the step being chosen, until it is observed
        self._recurring_excess = 0.0  # mean excess catch-up width per step of steady speculation
        self._last_k = 0
        self._drain = 0.0  # mean rows lost per step (0 while admissions keep the batch full)
        self._last_batch_size = 0
        self._acceptance = AcceptanceEstimator(config.k_max, config.acceptance)
        self._first = FirstSteps(config)  # a response's first steps at B = 1 (step 0)
        self._expected = expected_token_list(self._acceptance.planning_alpha_list(config.min_evidence_rows))
        self._plan_stale = False  # acceptance changed since _expected was planned
        self._reuse: StandingChoice | None = None  # the last greedy choice
        self._lease = PlainLease()  # the engine's copy of a standing plain choice (plain_lease)
        self._step, self._greedy_k = 0, 0
        self._num_confirmed, self._watch = 0, AcceptanceWatch()  # plans in a row at one greedy k (standing_steps)
        self._pending_probe: tuple[int, int] | None = None  # (batch_size, k) of an unobserved probe choice
        self._pending_check = False  # the step being chosen is a plain step the realized check asked for
        self._plain = PlainRun(config.settle_steps)
        self._realized = RealizedCheck(config.realized) if config.check_realized else None
        self._gain = RealizedGain(config.realized, enabled=config.check_realized)
        self._probe = ProbePlanner(config, self._gain)
        self._history = DecisionLog(config.history_len)
        self._stats = DepthStats(num_steps_by_k=[0] * (config.k_max + 1))
        self._arbiter = NeighbourArbiter(self._gain, config.k_max, self._stats)  # counts in the totals
        self._steady = SteadyRun()  # steps of the standing speculative choice, not yet folded in (observe)
        self._fold = getattr(cost_model, "observe_steady", None)  # without it (sim/'s models) every step is full

    @property
    def config(self) -> DepthConfig:
        return self._config

    @property
    def acceptance(self) -> AcceptanceEstimator:
        self._fold_steady()
        return self._acceptance

    @property
    def cost_model(self) -> StepCostModel:
        self._fold_steady()
        return self._cost

    @property
    def catch_up(self) -> CatchUpCost:
        self._fold_steady()
        return self._catch_up

    # The views below read the steps not yet flushed without flushing them (a rollout actor reads from its own thread).
    @property
    def history(self) -> list[DepthDecision]:
        """The most recent decisions, oldest first (at most config.history_len)."""
        return self._history.decisions(self._pending_runs())

    @property
    def last_decision(self) -> DepthDecision | None:
        """The record of the last observed step (None before the first)."""
        return self._history.last(self._pending_runs())

    @property
    def stats(self) -> DepthStats:
        """A snapshot of the running totals."""
        return self._stats.with_runs(self._pending_runs())

    def _pending_runs(self) -> list[Entry]:
        runs: list[Entry] = list(plain_runs(self._step, self._plain.pending(), self._cost.target_s))
        steady = self._steady.pending_records(self._fold, self._catch_up, self._expected) if len(self._steady) else None
        steady = self._first.records(steady) if len(self._first) else steady
        return runs + [steady] if steady is not None else runs

    def predicted_tokens_per_s(self, batch_size: int) -> NDArray[np.float64]:
        """Predicted tokens/s of the whole batch for every k = 0 .. k_max, from the current estimates."""
        self._fold_steady()
        return batch_size * np.array(self._current_expected()) / self._cost.step_s(batch_size, self._config.k_max)

    def planning_alphas(self) -> NDArray[np.float64]:
        """The acceptance the depth is planned with (AcceptanceEstimator.planning_alphas)."""
        return self.acceptance.planning_alphas(self._config.min_evidence_rows)

    def horizon_steps(self, batch_size: int) -> float:
        """Full-batch steps a catch-up paid now is spread over (catch_up.catch_up_horizon)."""
        self._flush()
        return catch_up_horizon(self._config.catch_up_horizon_steps, self._drain, DRAIN_RATE, self._last_batch_size,
                                batch_size)

    def choose_depth(self, batch_size: int, catch_up_tokens: int = 0) -> int:
        """The depth to draft this step (0 = plain decoding), given the width of the drafter's catch-up."""
        self._offered_catch_up = catch_up_tokens
        if self._first.claims(batch_size, catch_up_tokens, speculating=self._greedy_k > 0 and not self._pending_probe):
            return self._first.depth()
        reuse = self._reuse
        if reuse is not None and reuse.holds(batch_size, catch_up_tokens, self._step):
            return reuse.k
        k_max = self._config.k_max
        if self._config.mode is DepthMode.FIXED or k_max == 0:
            return k_max
        self._reuse = None
        if self._greedy_k == 0 and self._stands_in_drain(batch_size, catch_up_tokens):
            return 0
        self._flush()
        expected = self._current_expected()
        per_token_s = self._catch_up.per_token_s(batch_size)
        prices = PlanPrices.of(expected, self._cost.step_s(batch_size, k_max).tolist(), per_token_s,
                               self._recurring_excess, catch_up_tokens)
        step_s, rate, catch_up_s = prices.step_s, prices.rate, prices.catch_up_s
        self._first.price(batch_size, step_s, rate)
        # Leaving k = 0 pays the catch-up once, spread over the steps expected to follow at the new k;
        # a probe pays all of it in its one step (if acceptance is not there, it bought nothing).
        horizon = self.horizon_steps(batch_size)
        was_speculating = self._greedy_k > 0 and self._last_k > 0
        # The start margin is for what the catch-up model misses: without a catch-up, hysteresis suffices.
        start_gain = self._config.start_gain if catch_up_s[1] > 0 else self._config.hysteresis
        k = hysteresis_depth(self._greedy_k, rate, prices.start_rate(horizon), start_gain=start_gain,
                             hysteresis=self._config.hysteresis)
        if not k and horizon >= self._config.catch_up_horizon_steps:  # step 2b; a draining batch stays plain
            self._stats.num_measured_starts += bool(k := self._gain.faster_depth(batch_size, self._step, expected))
        if k != self._greedy_k:
            self._stats.num_depth_switches += 1
            self._greedy_k, self._num_confirmed = k, -1
        self._num_confirmed += 1
        if k and horizon >= self._config.catch_up_horizon_steps:  # step 2c: a neighbour that realized more tokens/s
            k = self._arbiter.depth(batch_size, k, self._step, expected)
        if k == 0 and catch_up_s[-1] > 0 and horizon < self._config.catch_up_horizon_steps:
            self._stands_in_drain(batch_size, catch_up_tokens, planned=True)  # it ends before a probe could pay
            return 0
        realized = self._realized if k > 0 else None  # a veto comes before a probe: no trial around it
        vetoed = realized is not None and realized.is_losing(batch_size, self._step, rate[k], rate[0])
        if vetoed and not self._gain.is_ahead(batch_size, k, self._step, expected):  # measured tokens/s over predicted
            self._stand(batch_size, 0, catch_up_tokens)  # a veto stands as a plain choice does (class doc, 4.)
            self._stats.num_vetoes += 1
            return 0
        probe_k = self._probe.depth(k, rate, prices.with_catch_up_s() if k == 0 else step_s, expected, self._step,
                                    settled=was_speculating and batch_size == self._last_batch_size,
                                    batch_size=batch_size)
        if probe_k == k and was_speculating and realized and realized.needs_plain_step(batch_size, self._step):
            self._pending_check = True
            return 0
        if probe_k != k:
            self._probe.spend()
            self._pending_probe = (batch_size, probe_k)
            self._reuse = StandingChoice(batch_size, probe_k, catch_up_tokens, self._step + TRIAL_STEPS, True)  # trial
            self._watch.start(0.0)
        elif k and was_speculating and (probe_k := self._arbiter.trial(batch_size, k, self._step, rate, expected)) != k:
            self._reuse = StandingChoice(batch_size, probe_k, catch_up_tokens, self._step + self._arbiter.trial_steps)
            self._watch.start(0.0)
        else:
            interval = self._stand(batch_size, k, catch_up_tokens)
            self._watch.start(expected[k] - 1.0 if interval > self._config.replan_interval_steps else 0.0)
        return probe_k

    def _stands_in_drain(self, batch_size: int, catch_up_tokens: int, *, planned: bool = False) -> bool:
        """Whether plain stands in a draining batch (DrainStand), as choose_depth's plan from a greedy k = 0 found
        (`planned`), or without a plan wherever leaving plain has a catch-up to pay for rows about to end."""
        horizon = self.horizon_steps(batch_size)  # first: it folds in the steps kept (observe) that the plan reads
        if not planned:
            excess = excess_at(catch_up_tokens, self._config.k_max)
            if horizon >= self._config.catch_up_horizon_steps or self._catch_up.per_token_s(batch_size) * excess <= 0:
                return False
            self._num_confirmed += 1
        drain = DrainStand(batch_size, catch_up_tokens, self._config, self._current_expected(),
                           lambda b: self._cost.step_s(b, self._config.k_max).tolist(), self._catch_up.per_token_s)
        if floor := drain.floor(self._config.catch_up_horizon_steps):
            self._stand(batch_size, 0, catch_up_tokens, checked_down_to=floor)
        else:
            self._reuse = StandingChoice(batch_size, 0, catch_up_tokens, self._step + self._config.replan_interval_steps)
        return True

    def _stand(self, batch_size: int, k: int, catch_up_tokens: int, checked_down_to: int = 0) -> int:
        """Let a greedy choice of k stand (standing_steps, StandingChoice); returns for how many steps."""
        check_in = self._realized.plain_step_due_in(batch_size, self._step) if k and self._realized else 1 << 30
        interval = standing_steps(k, self._config, probe_due_in=self._probe.plain_due_step - self._step,
                                  num_plain=self._plain.num_counted, num_confirmed=self._num_confirmed,
                                  check_due_in=check_in)
        self._reuse = StandingChoice(batch_size, k, catch_up_tokens, self._step + interval, checked_down_to=checked_down_to)
        return interval

    def plain_lease(self) -> PlainLease:
        """After `choose_depth` returned 0: for how many more steps, and down to how few rows, plain decoding stands
        (StandingChoice.lease_steps); the engine then skips its catch-up width and `choose_depth` (~7-12 us a step at
        B = 1-4) but calls `observe`. No lease for a check's plain step; renewed at every plain choice, revoked by
        `notify_weights_changed`."""
        due = self._probe.plain_due_step <= self._step
        return self._lease.renew(self._reuse, self._step, probe_due=due, num_passed=self._probe.num_passed)

    def observe(self, batch_size: int, k: int, num_accepted: Sequence[int] | NDArray[np.integer],
                draft_time_s: float, target_time_s: float) -> None:
        """Learn from one verified step: row i accepted num_accepted[i] of k drafts (its record: `last_decision`)."""
        if self._first.pending:  # kept, then folded in with the steady steps around it (FirstSteps)
            self._first.keep(self._step, k, num_accepted, self._offered_catch_up, draft_time_s, target_time_s)
            self._step, self._offered_catch_up = self._step + 1, 0
            return
        if k and self._steady.continues(self._reuse, batch_size, k, self._last_k, self._last_batch_size,
                                        self._fold is not None and self._pending_probe is None):  # folded in later
            self._steady.add(self._step, batch_size, k, num_accepted, self._offered_catch_up, draft_time_s,
                             target_time_s)
            if self._watch.falls_short(sum(num_accepted), batch_size):  # acceptance fell: plan next step, then every replan interval
                self._reuse, self._num_confirmed = None, -1
            self._step, self._offered_catch_up = self._step + 1, 0
            return
        if self._plain.is_quiet(batch_size, k, draft_time_s + target_time_s):  # recorded later (_flush_quiet)
            self._step += 1
            return
        assert 0 <= k <= self._config.k_max, (k, self._config.k_max)
        assert len(num_accepted) == batch_size, (len(num_accepted), batch_size)
        self._flush()
        # No numpy on a step's few rows (AcceptanceEstimator counts them in Python): at B = 1-4 each numpy call here
        # costs several microseconds inside the engine, on a step of ~1 ms.
        accepted = num_accepted if k > 0 else None
        excess = max(0, self._offered_catch_up - k - 1) if k > 0 else 0
        catch_up_s = self._catch_up.catch_up_s(batch_size, excess)
        predicted_s = self._cost.step_s(batch_size, self._config.k_max)
        decision = DepthDecision(
            step=self._step, batch_size=batch_size, k=k, is_probe=self._pending_probe == (batch_size, k),
            is_check=self._pending_check and k == 0, catch_up_tokens=self._offered_catch_up if k > 0 else 0,
            predicted_tokens=batch_size * float(self._expected[k]), predicted_catch_up_s=catch_up_s,
            predicted_step_s=float(predicted_s[k]) + catch_up_s, realized_step_s=draft_time_s + target_time_s,
            realized_tokens=(int(sum(accepted)) if accepted is not None else 0) + batch_size)
        self._pending_probe, self._pending_check = None, False
        self._offered_catch_up = 0
        # Plain steps right after speculation price the switch, not plain decoding (PlainRun.learned): no costs learned.
        # The realized check keeps them (inflated plain steps only make its veto more cautious); RealizedGain not.
        in_trial = self._reuse is not None and self._reuse.is_trial
        is_switch = self._plain.learned(batch_size, k, is_probe=decision.is_probe or in_trial)
        if self._realized is not None:
            self._realized.observe(self._step, batch_size, k, decision.realized_step_s, decision.predicted_step_s)
            if not is_switch if k == 0 else self._last_k > 0:  # settled plain steps, warm speculative ones
                self._gain.observe(self._step, batch_size, k, decision.realized_tokens, decision.realized_step_s)
                self._probe.trials.observe_step(decision)
        is_cold = decision.is_probe and self._greedy_k == 0  # atypical the other way: priced by its trial (TRIAL_STEPS)
        if is_cold:
            self._probe.observe_from_plain(decision.realized_step_s, decision.predicted_step_s)
        if k > 0 and self._last_k > 0:  # only steady speculation: after k = 0 the width is the plain stretch's
            self._recurring_excess += RECURRING_RATE * (excess - self._recurring_excess)
        if accepted is not None:
            self._acceptance.observe(k, accepted)
        else:
            self._acceptance.advance()
        if not is_switch:
            observe_step_costs(self._cost, self._catch_up, batch_size, k, excess, catch_up_s, draft_time_s,
                               target_time_s, is_cold=is_cold)
        if k > 0:  # a plain step changes no acceptance estimate; the plan is redone when next needed
            self._plan_stale = True
            self._probe.scheduled(k, self._step)
        self._end_step(decision)
        if k and self._watch.falls_short(decision.realized_tokens - batch_size, batch_size):  # as for a kept step
            self._reuse, self._num_confirmed = None, -1

    def _flush(self) -> None:  # at most one kind is pending: each full step flushes both first
        self._fold_steady()
        self._flush_quiet()

    def _fold_steady(self) -> None:
        """Fold in the steady steps kept since the last flush as observe's full path would one by one (to rounding):
        estimates, realized check, recurring catch-up (none), drain (no rows lost), probe clocks, records, totals."""
        self._probe.earn(len(self._first))  # first steps earn probe credit as any step does, and teach their estimate
        if not len(self._steady) and len(self._first):
            self._record(self._first.take())
        if not len(self._steady):
            return
        steps = self._steady.take()
        b, k, n = steps.batch_size, steps.k, len(steps)
        split = CatchUpSplit(self._catch_up, steps)
        predicted_s = self._fold(b, k, steps.draft_s, steps.target_s, split=split)  # type: ignore[misc]
        self._acceptance.observe_steps(k, steps.num_accepted)
        if self._realized is not None:
            step_s = [d + t for d, t in zip(steps.draft_s, steps.target_s)]
            self._realized.observe_run(steps.first_step, b, step_s, list(map(sum, zip(predicted_s, split.catch_up_s))))
            tokens = [sum(a) + b for a in steps.num_accepted]
            self._gain.observe_run(steps.first_step, b, k, tokens, step_s)
            self._probe.trials.observe(steps.first_step, b, k, tokens, step_s)
        for excess in split.excess:
            self._recurring_excess += RECURRING_RATE * (excess - self._recurring_excess)
        self._drain *= (1.0 - DRAIN_RATE) ** n  # clocks in closed form: no rows lost, a credit per step
        self._probe.earn(n)
        self._plan_stale = True
        self._probe.scheduled(k, steps.step_numbers[-1])
        records = SteadyRecords(steps, float(self._expected[k]), predicted_s, split.catch_up_s)
        self._record(self._first.take(records) if len(self._first) else records)

    def _record(self, run: SteadyRecords | FirstStepRecords) -> None:
        self._history.append_run(run)
        run.add_to(self._stats)

    def _flush_quiet(self) -> None:
        """Record the quiet plain steps observed since the last flush and move what they move: the acceptance
        clock, the drain rate (no rows lost), probe credit and the totals."""
        if not self._plain.quiet_s:
            return
        runs = plain_runs(self._step, self._plain.take_quiet(), self._cost.target_s)
        n = sum(len(times) for *_, times in runs)
        self._acceptance.advance(n)
        self._probe.earn(n)
        for first, batch_size, predicted_s, times in runs:
            if self._last_batch_size:  # rows lost at the run's first step, none within it
                self._drain += DRAIN_RATE * (max(0, self._last_batch_size - batch_size) - self._drain)
            self._drain *= (1.0 - DRAIN_RATE) ** (len(times) - 1)
            self._last_batch_size = batch_size
            self._history.append_plain_run(first, batch_size, predicted_s, times)
            self._gain.observe_run(first, batch_size, 0, [batch_size] * len(times), times)
            self._stats.add_plain_run(batch_size, predicted_s, times)

    def _end_step(self, decision: DepthDecision) -> None:
        """What every observed step moves, learned from or not: the last depth and batch size, the drain
        rate, the step clock, probe credit, and the step's record."""
        batch_size = decision.batch_size
        self._last_k = decision.k
        if self._last_batch_size:
            self._drain += DRAIN_RATE * (max(0, self._last_batch_size - batch_size) - self._drain)
        self._last_batch_size = batch_size
        self._step += 1
        self._probe.earn(1)
        self._history.append(decision)
        self._stats.add(decision, num_drafted=decision.k * batch_size)

    def notify_weights_changed(self) -> None:
        """Policy or draft weights changed: old acceptance evidence weighs less, deeper positions may be re-probed."""
        self._flush()
        self._acceptance.discount(self._config.weight_change_keep)
        self._first.discount(self._config.weight_change_keep)
        self._plan_stale, self._reuse = True, None
        self._lease.steps = 0
        self._probe.reopen(self._step)
        if self._realized is not None:
            self._realized.forget_speculative()
            self._gain.forget_speculative()

    def _current_expected(self) -> list[float]:
        if self._plan_stale:
            alphas = self._acceptance.planning_alpha_list(self._config.min_evidence_rows)
            self._expected, self._plan_stale = expected_token_list(alphas), False
        return self._expected
