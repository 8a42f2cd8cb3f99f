"""Step-cost model c_target(B, q) and c_draft(B, k): a start-up profile refined online from measured step times."""

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from rollspec.scheduler.config import CostConfig
from rollspec.scheduler.cost_profile import draft_curve, target_rows
from rollspec.scheduler.interpolation import PiecewiseLinear

MAX_Q = 64  # tokens per sequence in one verify forward; k_max must stay below this
_NUM_BUCKETS = 32  # batch-size buckets [2**i, 2**(i+1)), enough for any batch that fits a machine
# Profiled or observed times below this are treated as this: a drafter profiled at 0 s
# (n-gram lookup) still gets a positive base that the multiplicative correction can scale.
_MIN_TIME_S = 1e-6
# Plain decoding's first misses in a bucket correct its profiled price alone, later ones move every depth
# (CostModel._observe_plain). With a rate of 0.2 for plain, 8 take 83% of a profile's error away.
CALIBRATION_OBSERVATIONS = 8
# Plain's price follows the moves of speculative steps after this many ran since it was last measured
# (CostModel._plain_drag): the first ones correct prices the plan had wrong (a probe's trial of 8 steps where plain
# stands; the widths a plain miss moved after calibration), not a change of conditions. Following a trial's moves, the
# synthetic B = 4 device where k = 3-4 ran 0.92x plain speculated in 5.3% of one seed's steps (1.5-3.3% before).
PLAIN_STALE_STEPS = 64


class StepCostModel(Protocol):
    """What the depth scheduler plans with; CostModel is the measured one, sim/ plugs in others."""

    def step_s(self, batch_size: int, k_max: int) -> NDArray[np.float64]:
        """Predicted c_draft(B, k) + c_target(B, k + 1) for k = 0 .. k_max."""
        ...

    def draft_s(self, batch_size: int) -> float:
        """Predicted seconds of one more drafted position for batch_size rows (c_draft's slope in k)."""
        ...

    def drafting_s(self, batch_size: int, k: int) -> float:
        """Predicted c_draft(B, k): seconds of drafting k positions for batch_size rows (0 at k = 0)."""
        ...

    def target_s(self, batch_size: int, q: int) -> float:
        """Predicted c_target(B, q): seconds of one target forward over q tokens for each of batch_size rows."""
        ...

    def observe(self, batch_size: int, k: int, draft_time_s: float, target_time_s: float) -> None:
        """One measured step at depth k."""
        ...


class StepSplit(Protocol):
    """Per kept step, the catch-up width beyond a steady step's (`excess`) and, where it is > 0, the drafting time
    the drafting model learns from, given its prediction then (steady.CatchUpSplit)."""

    excess: list[int]

    def __call__(self, i: int, drafting_s: float, draft_time_s: float) -> float: ...


def profile_points(max_batch_size: int, k_max: int) -> tuple[list[int], list[int]]:
    """Batch sizes and verify widths q worth measuring at start-up: powers of two plus the ends.

    Measuring every (B, q) on this grid takes about (log2(B_max) + 2) * (log2(k_max) + 3)
    forwards per repeat, which keeps the profile within a few seconds.
    """
    assert max_batch_size >= 1 and 0 <= k_max < MAX_Q, (max_batch_size, k_max)
    batch_sizes = sorted({1 << i for i in range(max_batch_size.bit_length())} | {max_batch_size})
    qs = sorted({1, 2} | {1 + (1 << i) for i in range(k_max.bit_length())} | {k_max + 1})
    return batch_sizes, qs


def batch_bucket(batch_size: int) -> int:
    """Index of the power-of-two bucket holding batch_size; online corrections are kept per bucket."""
    return min(batch_size.bit_length() - 1, _NUM_BUCKETS - 1)


class CostModel:
    """Predicted seconds of drafting k positions c_draft(B, k) and of one target verify forward c_target(B, q).

    Drafting is priced c_draft(B, k) = a(B) + k * b(B) for k > 0: a per-step part a (the drafter's call,
    its catch-up forward over the accepted tokens, bookkeeping) and a per-position part b. On the zoo at
    B = 1 the draft model's drafting took ~115 us at k = 1 and ~150 us at k = 8 (C draft chains): priced
    per position from a profile at k = 8 (19 us) a k = 1 probe measured 6x its price, and the correction it
    taught priced k = 4 at 4x its cost, which kept the scheduler at plain where k = 4 ran 1.18x faster.

    Base values interpolate the start-up profile (linear in B within each measured q, then
    linear in q), extrapolate beyond it (see PiecewiseLinear), and are made non-decreasing
    in q, because a wider verify is never cheaper and a noisy profile saying otherwise would
    make speculation look free.

    Online refinement multiplies the base by exp(correction). For the target, the log
    correction of (bucket, q) is shared[bucket] + own[bucket, q] and every speculative observation moves
    both by the same step (how much of it reaches plain decoding, q = 1: _plain_drag),
    so about half of a drift seen at the q in use (longer KV context,
    a co-tenant) reaches the q values not in use, while an error in the profile's q-shape is
    fixed where it is observed. A verify width q >= 2 not yet observed in a bucket borrows the
    own correction of the nearest narrower observed q >= 2 there: the profile's error in the cost
    of speculating (one taken under load put every q >= 2 at B = 1 too dear, and the depths never
    run were never corrected, keeping k at 3-4 where 8 was best) is mostly common to the widths,
    and a borrowed correction that is wrong is fixed as soon as that width runs. Plain steps
    (q = 1) lend nothing: their first few misses in a bucket correct plain decoding alone, later
    ones move every width and the drafting alike (see _observe_plain). The draft has one log
    correction per bucket, on the whole of a(B) + k * b(B): a step at any k corrects every k by its
    relative error, so what a probe at k = 1-2 measures prices k = 4 through the profile's shape. Buckets learn
    independently: a batch size entering a new bucket starts from the profile. (Borrowing
    the neighbour bucket's correction, or an overall level, was tried: the profile's error
    is not a constant factor across batch sizes, and both did worse in closed loop.)
    """

    def __init__(self, *, target_s: Mapping[tuple[int, int], float], draft_s: Mapping[int, float],
                 config: CostConfig, draft_fixed_s: Mapping[int, float] | None = None) -> None:
        self._config = config
        self._target_rows, self._qs = target_rows(target_s, MAX_Q)
        self._draft = draft_curve(draft_s)
        self._draft_fixed = draft_curve(draft_fixed_s) if draft_fixed_s else None
        # Per-bucket values in Python lists (of lists per width): a numpy element read or write costs a few
        # microseconds inside the engine (a fold of kept steps made ~40 of them, ~80 us at EAGLE B = 4); the
        # arithmetic is the same float64, element by element, and only exp runs in numpy (_refresh_widths).
        self._shared = [0.0] * _NUM_BUCKETS
        self._speculative_shared = [0.0] * _NUM_BUCKETS  # the part of _shared that speculative steps moved
        self._plain_anchor = [0.0] * _NUM_BUCKETS  # _speculative_shared when plain went stale (_count_speculative)
        self._speculative_since_plain = [0] * _NUM_BUCKETS  # speculative steps observed since
        self._anchor_log = [[0.0] * MAX_Q for _ in range(_NUM_BUCKETS)]  # and every depth's log correction then
        self._last_depth = [0] * _NUM_BUCKETS  # the depth of the last speculative step observed
        self._own = [[0.0] * MAX_Q for _ in range(_NUM_BUCKETS)]
        self._target_factor = [[1.0] * MAX_Q for _ in range(_NUM_BUCKETS)]
        # _lender[b][k]: the k whose own correction prices width k + 1 in bucket b (itself once observed).
        self._lender = [list(range(MAX_Q)) for _ in range(_NUM_BUCKETS)]
        self._observed = [[False] * MAX_Q for _ in range(_NUM_BUCKETS)]
        self._draft_log = [0.0] * _NUM_BUCKETS
        self._num_plain = [0] * _NUM_BUCKETS
        self._base: dict[int, tuple[float, float, list[float]]] = {}
        # step_s by (B, k_max) as of correction version `_version` (moved by every change of a correction): a plan
        # reads it at each drop of a draining batch's rows and each quiet plain run's record, where building it cost
        # ~10 us inside the engine (five numpy calls then) and the corrections had not moved.
        self._version = 0
        self._step_cache: dict[tuple[int, int], tuple[int, NDArray[np.float64]]] = {}

    @classmethod
    def from_profile(cls, target_s: Mapping[tuple[int, int], float], draft_s: Mapping[int, float],
                     config: CostConfig = CostConfig(), *,
                     draft_fixed_s: Mapping[int, float] | None = None) -> "CostModel":
        """Build from measured seconds: target_s[(B, q)] per verify forward, draft_s[B] per drafted position and
        draft_fixed_s[B] per speculative step beside them (none: drafting is priced per position alone)."""
        return cls(target_s=target_s, draft_s=draft_s, config=config, draft_fixed_s=draft_fixed_s)

    def target_s(self, batch_size: int, q: int) -> float:
        """Predicted seconds of one target forward over q tokens for each of batch_size rows."""
        assert 1 <= q <= MAX_Q, q
        if q == 1:  # plain decoding's price, step_s's k = 0, in one product: a drain's quiet plain runs are each
            # recorded at another batch size, where step_s's cached vector (five numpy calls) was ~40 us each
            return float(self._base_at(batch_size)[2][0] * self._target_factor[batch_bucket(batch_size)][0])
        return self._corrected_target(batch_size, q)[q - 1]

    def draft_s(self, batch_size: int) -> float:
        """Predicted seconds of one more drafted position for batch_size rows: b(B), corrected."""
        _, per_position, _ = self._base_at(batch_size)
        return per_position * self._draft_factor(batch_size)

    def drafting_s(self, batch_size: int, k: int) -> float:
        """Predicted c_draft(B, k) = (a(B) + k * b(B)) * correction: seconds of drafting k positions (0 at k = 0)."""
        if k == 0:
            return 0.0
        fixed, per_position, _ = self._base_at(batch_size)
        return (fixed + k * per_position) * self._draft_factor(batch_size)

    def step_s(self, batch_size: int, k_max: int) -> NDArray[np.float64]:
        """Predicted c_draft(B, k) + c_target(B, k + 1) for k = 0 .. k_max (read-only; recomputed only after the
        corrections moved)."""
        return self._step_s(batch_size, k_max)

    def _step_s(self, batch_size: int, k_max: int) -> NDArray[np.float64]:
        cached = self._step_cache.get((batch_size, k_max))
        if cached is not None and cached[0] == self._version:
            return cached[1]
        assert 0 <= k_max < MAX_Q, k_max
        fixed, per_position, _ = self._base_at(batch_size)
        factor = self._draft_factor(batch_size)
        per_k, fixed_s = per_position * factor, fixed * factor
        target = self._corrected_target(batch_size, k_max + 1)
        out = [k * per_k + top + fixed_s if k else k * per_k + top for k, top in enumerate(target)]
        step = np.array(out)
        step.flags.writeable = False
        self._step_cache[(batch_size, k_max)] = (self._version, step)
        return step

    def observe(self, batch_size: int, k: int, draft_time_s: float, target_time_s: float) -> None:
        """Refine the model with one measured step at depth k (target forward over q = k + 1)."""
        assert 0 <= k < MAX_Q, k
        b = batch_bucket(batch_size)
        draft_fixed, draft_per_position, target_base = self._base_at(batch_size)
        rate = self._config.correction_rate
        self._version += 1
        predicted = float(target_base[k] * self._target_factor[b][k])
        step = rate * self._clipped_log_error(target_time_s, predicted)
        if k == 0:
            self._observe_plain(b, 2.0 * step)
            return
        self._shared[b] += step
        self._own[b][k] += step
        # How far this reaches plain decoding: _plain_drag.
        self._speculative_shared[b] += step
        if not self._observed[b][k]:
            self._observed[b][k] = True
            self._lender[b] = _lenders(self._observed[b])
        self._count_speculative(b, 1)
        self._refresh_widths(b)
        self._last_depth[b] = k
        drag = self._plain_drag(b, self._speculative_shared[b], k, self._shared[b] + self._own[b][k])
        self._target_factor[b][0] = math.exp(self._shared[b] + self._own[b][0] - drag)
        predicted = (draft_fixed + k * draft_per_position) * math.exp(self._draft_log[b])
        self._draft_log[b] += rate * self._clipped_log_error(draft_time_s, predicted)

    def observe_steady(self, batch_size: int, k: int, draft_times_s: Sequence[float], target_times_s: Sequence[float],
                       *, split: StepSplit | None = None, apply: bool = True) -> list[float]:
        """Steps at one batch size and depth k > 0 already observed here, folded in as `observe` would one by one
        (to rounding), in scalar math; returns `step_s(batch_size, k)[k]` as it stood before each. Where
        `split.excess[i]` > 0, `split(i, drafting_s, draft_time_s)`, given step i's predicted drafting then, returns
        the drafting time to learn from (catch_up.observe_step_costs); elsewhere the step's own. With apply=False
        nothing here changes: predictions for a view."""
        b = batch_bucket(batch_size)
        assert 0 < k < MAX_Q and self._observed[b][k], (k, b)
        draft_fixed, draft_per_position, target_base = self._base_at(batch_size)
        rate = self._config.correction_rate
        shared, own, speculative = self._shared[b], self._own[b][k], self._speculative_shared[b]
        draft_log = self._draft_log[b]
        # The widths below k keep their own corrections during the run and move with the shared one; plain
        # decoding's with the shared one less what speculative steps moved it (observe).
        # Python floats from here: numpy calls on arrays of a few values cost ~5 us each inside the engine.
        # (A lender is never wider than its borrower: own corrections below k suffice.)
        base, own_by_q, lender = target_base[:k + 1], self._own[b][:k], self._lender[b][:k]
        narrower = max((base[q] * math.exp(own_by_q[lender[q]]) for q in range(1, k)), default=0.0)
        plain = base[0] * math.exp(own_by_q[0])
        # A step moves shared, own and speculative by the same log step s: the target at k by exp(2 s), the
        # narrower widths and exp(speculative) by exp(s). So the loop keeps the factors and multiplies them by a
        # power of the clipped time ratio, one pow per term where a log and three exps were (the fold ran ~9 us a
        # step inside the engine at B = 1); the logs are summed once at the end.
        hi = math.exp(self._config.max_log_error)
        lo = 1.0 / hi
        target_k = base[k] * math.exp(shared + own)
        shared_f, speculative_f = math.exp(shared), math.exp(speculative)
        # Plain follows depth k's price once stale (_plain_drag): its price per unit of target_k, fixed for the run.
        stale = self._num_plain[b] and self._speculative_since_plain[b] >= PLAIN_STALE_STEPS
        plain_per_k = plain * shared_f * math.exp(-self._plain_drag(b, speculative, k, shared + own)) / target_k
        drafting_s = (draft_fixed + k * draft_per_position) * math.exp(draft_log)
        excess = split.excess if split is not None else None
        predicted, target_ratios, draft_ratios = [], [], []
        for i, (draft_s, target_s) in enumerate(zip(draft_times_s, target_times_s)):
            envelope = target_k
            if shared_f * narrower > envelope:
                envelope = shared_f * narrower
            if stale:
                plain_now = plain_per_k * target_k
            else:
                plain_now = plain * shared_f / speculative_f if speculative_f > 1.0 else plain * shared_f
            if plain_now > envelope:
                envelope = plain_now
            predicted.append(drafting_s + envelope)
            if excess is not None and excess[i] > 0:
                draft_s = split(i, drafting_s, draft_s)  # type: ignore[misc]
            ratio = (target_s if target_s > _MIN_TIME_S else _MIN_TIME_S) / target_k
            ratio = hi if ratio > hi else (lo if ratio < lo else ratio)
            target_ratios.append(ratio)
            move = ratio ** rate
            target_k *= move * move
            shared_f *= move
            speculative_f *= move
            ratio = (draft_s if draft_s > _MIN_TIME_S else _MIN_TIME_S) / drafting_s
            ratio = hi if ratio > hi else (lo if ratio < lo else ratio)
            draft_ratios.append(ratio)
            drafting_s *= ratio ** rate
        if apply:
            self._version += 1
            step = rate * sum(map(math.log, target_ratios))
            self._shared[b], self._own[b][k] = shared + step, own + step
            self._speculative_shared[b] = speculative + step
            self._count_speculative(b, len(target_ratios))
            self._draft_log[b] = draft_log + rate * sum(map(math.log, draft_ratios))
            self._refresh_widths(b)
            self._last_depth[b] = k
            drag = self._plain_drag(b, speculative + step, k, shared + own + 2.0 * step)
            self._target_factor[b][0] = math.exp(shared + step + own_by_q[0] - drag)
        return predicted

    def _refresh_widths(self, b: int) -> None:
        """Every width's correction factor in bucket b, exp(shared + its lender's own) (plain's is then set apart): the
        sums in Python, the exp in numpy as before (its exp may round apart from math.exp on some CPUs)."""
        own, shared = self._own[b], self._shared[b]
        self._target_factor[b] = np.exp([shared + own[q] for q in self._lender[b]]).tolist()

    def _observe_plain(self, b: int, move: float) -> None:
        """Plain decoding's miss (log, already scaled): its first CALIBRATION_OBSERVATIONS in a bucket correct the
        profile's plain price alone; after that a miss is a change of conditions (load slows every depth alike)
        and moves plain decoding, every width and the drafting alike.

        Plain moving alone (or its widths by half, the drafting not at all) made speculation look 1.3-1.6x
        better after a burst of load on the zoo (draft model, B = 1: the warm scheduler then ran k = 2-3 at 2-4
        ms a step for hundreds of steps where plain won by 10%); moving the widths with plain's first misses
        priced them twice a profile's error where they had just been measured (a profile taken under load)."""
        # Plain measured: the price as it stands, from here on moved as _plain_drag says for a fresh measurement.
        speculative, k = self._speculative_shared[b], self._last_depth[b]
        width_log = self._shared[b] + self._own[b][self._lender[b][k]]
        log_price = self._shared[b] + self._own[b][0] - self._plain_drag(b, speculative, k, width_log)
        self._speculative_since_plain[b] = 0
        self._own[b][0] = log_price - self._shared[b] + max(0.0, speculative)
        if self._num_plain[b] < CALIBRATION_OBSERVATIONS:
            self._num_plain[b] += 1
            self._own[b][0] += move
            self._target_factor[b][0] *= math.exp(move)
            return
        self._shared[b] += move
        self._draft_log[b] += move
        factor = math.exp(move)
        self._target_factor[b] = [f * factor for f in self._target_factor[b]]

    def _count_speculative(self, b: int, num_steps: int) -> None:
        """`num_steps` more speculative steps since plain was measured; at the PLAIN_STALE_STEPS-th, every depth's
        price as it stands becomes what later moves are measured from (_plain_drag)."""
        before = self._speculative_since_plain[b]
        self._speculative_since_plain[b] = before + num_steps
        if before < PLAIN_STALE_STEPS <= before + num_steps:
            self._plain_anchor[b] = self._speculative_shared[b]
            shared, own = self._shared[b], self._own[b]
            self._anchor_log[b] = [shared + own[q] for q in self._lender[b]]

    def _plain_drag(self, b: int, speculative: float, k: int, width_log: float) -> float:
        """What plain decoding's log price leaves out of the shared correction, of which `speculative` is the part
        speculative steps moved; `width_log` is depth k's log correction now (k: the depth last observed).

        Speculative steps slower than predicted do not make plain decoding dearer: on the zoo (B = 1, EAGLE) verify
        steps ran ~20% over the profile while plain steps matched it, and passing that on priced plain 10-13% too
        dear. Faster ones (net) make it cheaper: that is a profile taken under load. But once PLAIN_STALE_STEPS
        speculative steps ran since plain was last measured in the bucket, the move of depth k's price from then on
        reaches plain, either way: a change of conditions that plain, rarely run while speculating, has not
        measured. On the zoo at B = 4 (EAGLE) with plain's price frozen, the co-tenants' load swings (plain steps
        0.53-0.70 ms within 20 s) put the plan's k = 4-8 at 0.85-0.95x plain where fixed k ran 1.01-1.14x, and the
        warm scheduler went plain for blocks at a time."""
        if not self._num_plain[b] or self._speculative_since_plain[b] < PLAIN_STALE_STEPS:
            return max(0.0, speculative)
        anchor, drift = self._plain_anchor[b], width_log - self._anchor_log[b][k]
        return speculative - anchor + max(0.0, anchor) - drift

    def _clipped_log_error(self, observed_s: float, predicted_s: float) -> float:
        # Scalar math on purpose: this runs every step and numpy's scalar overhead dominates here.
        clip = self._config.max_log_error
        return min(clip, max(-clip, math.log(max(observed_s, _MIN_TIME_S) / predicted_s)))

    def _draft_factor(self, batch_size: int) -> float:
        """The online correction of drafting's profiled price at batch_size's bucket."""
        return math.exp(self._draft_log[batch_bucket(batch_size)])

    def _corrected_target(self, batch_size: int, n: int) -> list[float]:
        """c_target(B, q) for q = 1 .. n as corrected, each the running maximum over the narrower widths (a wider
        verify never costs less): Python floats, the same values as numpy's product and maximum.accumulate (a few
        numpy calls were ~15-25 us inside the engine at B = 4)."""
        _, _, target_base = self._base_at(batch_size)
        out, top = [], 0.0
        for q, (base, factor) in enumerate(zip(target_base[:n], self._target_factor[batch_bucket(batch_size)][:n])):
            corrected = base * factor
            top = corrected if q == 0 or corrected > top else top
            out.append(top)
        return out

    def _base_at(self, batch_size: int) -> tuple[float, float, list[float]]:
        """Profiled a(B) and b(B) of drafting (b floored at _MIN_TIME_S) and c_target(B, q) for q = 1 .. MAX_Q (Python
        floats: read a few at a time)."""
        assert batch_size >= 1, batch_size
        cached = self._base.get(batch_size)
        if cached is None:
            at_measured_q = np.array([row(batch_size) for row in self._target_rows])
            by_q = PiecewiseLinear(self._qs, at_measured_q)(np.arange(1, MAX_Q + 1))
            target = np.maximum.accumulate(np.maximum(by_q, _MIN_TIME_S))
            fixed = max(float(self._draft_fixed(batch_size)), 0.0) if self._draft_fixed is not None else 0.0
            cached = (fixed, max(float(self._draft(batch_size)), _MIN_TIME_S), target.tolist())
            self._base[batch_size] = cached
        return cached


def _lenders(observed: list[bool]) -> list[int]:
    """Per width index q, the widest observed index <= q whose own correction it borrows (itself if observed, q where
    none is: plain's index 0 is never observed, so it lends to none)."""
    out, seen = [], 0
    for q, is_observed in enumerate(observed):
        seen = q if is_observed else seen
        out.append(seen if seen > 0 else q)
    return out
