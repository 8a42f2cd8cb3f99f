"""A greedy depth choice that stands for some steps without re-planning (DepthScheduler.choose_depth)."""

from collections.abc import Callable
from dataclasses import dataclass

from rollspec.scheduler.catch_up import excess_at
from rollspec.scheduler.config import DepthConfig

# A plain choice is re-planned after at most this many steps, or when a probe falls due (see choose_depth).
PLAIN_REPLAN_STEPS = 64

# While a probe from plain is due but waits for a catch-up narrow enough to pay, the engine asks at least this often
# (a plain lease is at most this long), twice as long after each further plan that found it not worth it, up to
# PLAIN_REPLAN_STEPS: asking every 4 steps cost ~12 us a step at B = 4 on the zoo (a catch-up width and a standing
# choice's check each time, a full plan of ~200 us when the catch-up halves), ~2% of a plain step, and there a
# probe was never worth it.
DUE_PROBE_ASK_STEPS = 16


@dataclass(frozen=True, slots=True)
class StandingChoice:
    """Depth `k`, planned at `batch_size` with `catch_up_tokens` offered, reused until step `until_step`.

    Planning costs tens of microseconds, about 5% of a step at batch size 1-4 on a CPU, and the
    estimates behind it move over a half-life of steps, not one; admissions and finishes move the
    batch size and the catch-up every few steps at B = 16 (re-planning on each cost ~20 us a step).
    """

    batch_size: int
    k: int
    catch_up_tokens: int
    until_step: int
    is_trial: bool = False  # a probe from plain decoding's trial (probe.TRIAL_STEPS): like the probe, no plain restart
    checked_down_to: int = 0  # plain, in a draining batch: plain was also checked to win down to this many rows
    # (DrainStand.floor; 0: only at batch_size)

    def holds(self, batch_size: int, catch_up_tokens: int, step: int) -> bool:
        """Whether the choice still stands at `step` for this batch size and catch-up width."""
        if step >= self.until_step:
            return False
        if self.k == 0:  # plain: while the batch keeps 3/4 of its rows (or of those checked) and half the catch-up
            return batch_size >= self.min_batch_size and 2 * catch_up_tokens >= self.catch_up_tokens
        # speculating: at the same batch size, whatever the catch-up. A plan from k > 0 charges no catch-up offered
        # (it is paid whenever the drafter next drafts), so it would choose the same; at B = 1 on the zoo every
        # admission (every ~4 steps at k = 4) re-planned, ~40% of speculative steps at ~110-190 us each.
        return batch_size == self.batch_size

    def lease_steps(self, step: int, *, probe_due: bool, num_passed: int) -> int:
        """Steps after `step` for which a plain choice stands whatever the catch-up (its lease; 0 at k > 0): plain
        steps only grow the catch-up, which falls only when the widest row finishes, and the choice is re-planned
        within its interval (before a due probe) anyway. While a probe from plain is due but `num_passed` plans in
        a row found it not worth it, at most DUE_PROBE_ASK_STEPS, doubling from the second such plan, up to 4x."""
        if self.k:
            return 0
        steps = self.until_step - step - 1
        if probe_due:
            steps = min(steps, (DUE_PROBE_ASK_STEPS << min(max(num_passed - 1, 0), 2)) - 1)
        return steps

    @property
    def min_batch_size(self) -> int:
        """The fewest rows a plain choice stands for: 3/4 of the planned batch, or of the fewest rows it was checked
        at (`checked_down_to`: DrainStand.floor), as if planned there (see `holds`)."""
        planned = min(self.batch_size, self.checked_down_to) if self.checked_down_to else self.batch_size
        return (3 * planned + 3) // 4


class DrainStand:
    """How far a plain choice stands in a draining batch of `batch_size` rows (DepthScheduler._stands_in_drain), for
    one plan's acceptance (`expected`), prices and offered catch-up: plain_still_wins at any batch size.

    A draining batch (one expected to end within catch_up_horizon_steps: horizon_steps) does not leave plain decoding
    for speculation with a catch-up to pay: its rows are near their ends. On the zoo's drain the draft model's steps
    on its last 1-3 rows (k = 3-8, a catch-up of 35 tokens) were planned at 1.8-3x plain's tokens/s and ran at 2-4
    tokens in 1-2.8 ms where a plain step took ~0.5-0.7 ms for 1-3 (rows one or two tokens from their end), and such
    runs read ~0.97 of plain decoding against ~0.98-0.99 without."""

    __slots__ = ("batch_size", "_wins")

    def __init__(self, batch_size: int, catch_up_tokens: int, config: DepthConfig, expected: list[float],
                 step_s: Callable[[int], list[float]], per_token_s: Callable[[int], float]) -> None:
        self.batch_size = batch_size
        self._wins = lambda b, horizon: plain_still_wins(expected, step_s(b), per_token_s(b), catch_up_tokens, horizon,
                                                         config.start_gain)

    def floor(self, horizon: float) -> int:
        """0 where plain would not win were the batch to stop draining (its catch-up spread over `horizon`, the
        longest: catch_up_horizon_steps): the choice then stands replan_interval_steps, as the drain may stop.
        Else the fewest rows it stands down to, as a steady plain choice does: the batch sizes at which a choice
        planned at the last would end (StandingChoice.holds: below 3/4 of its rows), walked down while plain
        still wins so there. Each is what a plan at that drop would find, asked now: on the zoo's drain (64 rows
        to none in ~20 steps, plain best at every size) each drop of a quarter of the rows asked again, ~8 asks
        of ~100-300 us a round inside the engine, ~1.5% of the drain's time."""
        floor = self.batch_size
        if not self._wins(floor, horizon):
            return 0
        while floor > 1 and self._wins(below := (3 * floor + 3) // 4 - 1, horizon):
            floor = below
        return floor


@dataclass(slots=True)
class PlainLease:
    """Steps for which the engine decodes plainly without asking the scheduler (or the drafter for its catch-up
    width): `steps` more steps while the batch holds at least `min_batch_size` rows. The engine counts `steps`
    down; the scheduler renews it after a plain choice and revokes it (steps = 0) when weights change."""

    steps: int = 0
    min_batch_size: int = 0

    def renew(self, choice: StandingChoice | None, step: int, *, probe_due: bool, num_passed: int) -> "PlainLease":
        """Renewed from the standing choice at `step` (StandingChoice.lease_steps, min_batch_size); none: no lease."""
        self.steps = choice.lease_steps(step, probe_due=probe_due, num_passed=num_passed) if choice else 0
        self.min_batch_size = choice.min_batch_size if choice else 0
        return self


def standing_steps(k: int, config: DepthConfig, *, probe_due_in: int, num_plain: int, num_confirmed: int,
                   check_due_in: int) -> int:
    """Steps a greedy choice of k stands (DepthScheduler.choose_depth), `num_confirmed` plans in a row after the one
    that chose it having chosen it again.

    Speculating: replan_interval_steps, doubled for each confirming plan up to max_replan_interval_steps and two
    acceptance half-lives (what moves a plan's inputs; a shorter memory re-plans as often). On the zoo at B = 1
    (EAGLE, k = 4) a plan every 4 steps was ~65-75 us of a ~0.6 ms step inside the engine (the plan and the fold
    of the steps kept since the last one: ~260-300 us each), one every 16 steps still ~25 us (~390 us each, cold
    caches); an acceptance drop ends a choice early (AcceptanceWatch), so a confirmed choice stands through more
    than the estimates' half-life; it is not extended past the realized check's next plain step (`check_due_in`).
    Plain: for half the plain steps counted so far (PlainRun.num_counted), up to PLAIN_REPLAN_STEPS and not past a
    due probe: a plain step moves no acceptance and, once plain's price is calibrated (its first observations at a
    batch size), no ranking. Planning every 16 steps was ~1% at B = 1."""
    interval = config.replan_interval_steps
    if k:
        longest = min(config.max_replan_interval_steps, int(2 * config.acceptance.half_life_steps), check_due_in)
        return max(interval, min(longest, interval << min(num_confirmed, 8)))
    stand = min(PLAIN_REPLAN_STEPS, num_plain // 2, probe_due_in if probe_due_in > 0 else PLAIN_REPLAN_STEPS)
    return max(interval, stand)


SHORTFALL_STEPS, SHORTFALL_Z = 4, 3.0  # AcceptanceWatch.falls_short


class AcceptanceWatch:
    """Drafts accepted per row by the last SHORTFALL_STEPS speculative steps of the standing choice, against its plan.

    A choice that stands longer than replan_interval_steps (up to max_replan_interval_steps) must not outlive an
    acceptance drop by that long: once its last SHORTFALL_STEPS steps accepted fewer drafts than planned by more
    than SHORTFALL_Z Poisson standard deviations, it ends (the next step plans, and the choice after it stands the
    replan interval). Only evidence that strong: a plan called at every dip of a noisy count plans at the
    estimate's low points (with 0.3-0.5 of the planned drafts as the bar, a synthetic B = 1 trace at alpha 0.375
    then sat at plain for 2/3 of its steps where k = 1 was 1.19x faster). A choice planned at fewer than
    SHORTFALL_Z**2 drafts over the window (or at 0: one that stands the replan interval only) never ends so.
    """

    __slots__ = ("planned_per_row", "accepted", "rows", "num_steps")

    def __init__(self) -> None:
        self.start(0.0)

    def start(self, planned_per_row: float) -> None:
        self.planned_per_row, self.num_steps = planned_per_row, 0
        self.accepted, self.rows = [0] * SHORTFALL_STEPS, [0] * SHORTFALL_STEPS  # rings of the last steps

    def falls_short(self, num_accepted: int, num_rows: int) -> bool:
        """Count one speculative step (drafts accepted over its rows); whether the last SHORTFALL_STEPS steps fell
        short of the plan."""
        if not self.planned_per_row:
            return False
        i = self.num_steps % SHORTFALL_STEPS
        self.accepted[i], self.rows[i] = num_accepted, num_rows
        self.num_steps += 1
        if self.num_steps < SHORTFALL_STEPS:
            return False
        planned = self.planned_per_row * sum(self.rows)
        return sum(self.accepted) < planned - SHORTFALL_Z * planned ** 0.5


def plain_still_wins(expected: list[float], step_s: list[float], catch_up_per_token_s: float, catch_up_tokens: int,
                     horizon: float, gain: float) -> bool:
    """Whether a plan from greedy k = 0 keeps plain (DepthScheduler.choose_depth, steps 1-2; DrainStand.floor asks it
    at smaller batch sizes): a catch-up to pay at k_max and no k > 0 predicted faster than plain by more than `gain`
    with its catch-up (catch_up.excess_tokens) spread over `horizon` steps. The plan's arithmetic in its order, less the
    recurring catch-up (never negative), so True here is that plan's plain stand; on ~9 Python floats, a few us."""
    k_max = len(expected) - 1
    if catch_up_per_token_s * excess_at(catch_up_tokens, k_max) <= 0:
        return False
    bar = expected[0] / step_s[0] * (1.0 + gain)
    return all(expected[k] / (step_s[k] + catch_up_per_token_s * excess_at(catch_up_tokens, k) / horizon) <= bar
               for k in range(1, k_max + 1))
