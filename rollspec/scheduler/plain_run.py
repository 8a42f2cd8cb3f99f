"""The run of plain steps the depth scheduler is in: which of its steps are learned from, and the quiet rest."""

from rollspec.scheduler.cost_model import CALIBRATION_OBSERVATIONS

PLAIN_LEARN_EVERY = 64  # in a long run of plain steps, one in this many is learned from (see PlainRun.is_quiet)


class PlainRun:
    """Plain steps since the last speculative one, and those kept as their batch size and time only (quiet).

    Once a run has settled (more than `settle_steps` plain steps since speculation), its steps
    are learned from at 1, 2, 4, ..., 64 of the run in a power-of-two batch-size bucket (the cost
    model's: it learns per bucket), then one in PLAIN_LEARN_EVERY; in a bucket where
    CALIBRATION_OBSERVATIONS plain steps have been learned from (its plain price calibrated), at
    those steps of the whole run instead. The others are quiet: DepthScheduler.observe keeps only
    their batch size and time (its full path cost ~60-90 us a step inside the engine, cold caches,
    8% of a plain step at B = 1, and plain steps in a run differ by little more than noise) and
    records them in bulk later. Buckets and calibration, not one batch size: a draining batch
    changes size at nearly every step (on the zoo's, 64 to 0 in ~20, and at the end of every
    steady run), and took the full path at each (~74-120 us).
    """

    def __init__(self, settle_steps: int) -> None:
        self._settle_steps = settle_steps
        self.since_speculative = settle_steps  # plain steps since the last speculative one (none yet: settled)
        self.num_at_batch = 0  # plain steps in the current bucket since it changed or speculation (not a probe) ran
        self._num_plain = 0  # plain steps since speculation (not a probe) ran
        self._bits = 0  # bit length of the last plain step's batch size: its bucket
        self._settled = True
        self._num_learned: dict[int, int] = {}  # plain steps learned from, by bucket (bit length), ever
        self.quiet_s: list[float] = []  # realized times of quiet steps not yet recorded
        self.quiet_b: list[int] = []  # and their batch sizes

    def is_quiet(self, batch_size: int, k: int, step_s: float) -> bool:
        """Count one observed step; True if it is quiet (only its batch size and time are kept)."""
        if k:
            return False
        bits = batch_size.bit_length()
        if bits != self._bits:
            self._bits, self.num_at_batch = bits, 0
        n = self.num_at_batch = self.num_at_batch + 1
        m = self._num_plain = self._num_plain + 1
        if self._settled:
            if self._num_learned.get(bits, 0) >= CALIBRATION_OBSERVATIONS:
                n = m
            if n & (n - 1) and n % PLAIN_LEARN_EVERY:
                self.since_speculative += 1
                self.quiet_s.append(step_s)
                self.quiet_b.append(batch_size)
                return True
        return False

    @property
    def num_counted(self) -> int:
        """The plain steps a standing plain choice grows with (DepthScheduler.choose_depth stands for half of them):
        those in the current bucket, or, once its plain price is calibrated, those of the whole run (as `is_quiet`
        counts). Restarting at every bucket change re-planned ~7 times in each 136-step steady run at B = 16 on the
        zoo (the run's tail moves the bucket), ~130 us inside the engine each, where nothing moved the ranking."""
        is_calibrated = self._num_learned.get(self._bits, 0) >= CALIBRATION_OBSERVATIONS
        return self._num_plain if is_calibrated else self.num_at_batch

    def learned(self, batch_size: int, k: int, *, is_probe: bool) -> bool:
        """A step took the full path; True if it is a switch (a plain step right after speculation: they cost
        1.2-1.6x a plain step in a run of them on the zoo and price the switch, not plain decoding; at B = 1 with
        EAGLE the first 1.05-1.25 ms, falling over 3-8 steps to 0.73-0.85; learning from the realized check's
        isolated plain steps, the cost model priced plain decoding ~1.5x what it costs).

        A probe does not restart the counts of plain steps: plain's price is as calibrated after it as before
        (restarting re-learned plain at 1, 2, 4, ... and re-planned every 4-30 steps after every probe: at B = 1
        on the zoo ~10 re-plans of ~120 us inside the engine per probe, ~5 us a step)."""
        self.since_speculative = self.since_speculative + 1 if k == 0 else 0
        if k > 0 and not is_probe:
            self.num_at_batch = self._num_plain = 0
        is_switch = 0 < self.since_speculative <= self._settle_steps
        if k == 0 and not is_switch:
            bits = batch_size.bit_length()
            self._num_learned[bits] = self._num_learned.get(bits, 0) + 1
        self._settled = k == 0 and not is_switch
        return is_switch

    def take_quiet(self) -> list[tuple[int, list[float]]]:
        """The quiet steps not yet recorded, as runs of one batch size (oldest first), now handed over."""
        runs = _runs(self.quiet_b, self.quiet_s)
        self.quiet_s, self.quiet_b = [], []
        return runs

    def pending(self) -> list[tuple[int, list[float]]]:
        """The same without handing them over: safe to call from another thread than the one observing."""
        return _runs(list(self.quiet_b), list(self.quiet_s))


def _runs(batch_sizes: list[int], times: list[float]) -> list[tuple[int, list[float]]]:
    runs: list[tuple[int, list[float]]] = []
    for batch_size, seconds in zip(batch_sizes, times):
        if runs and runs[-1][0] == batch_size:
            runs[-1][1].append(seconds)
        else:
            runs.append((batch_size, [seconds]))
    return runs
