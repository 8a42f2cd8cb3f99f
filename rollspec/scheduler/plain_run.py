"""The run of plain steps the depth scheduler is in: which of its steps are learned from, and the quiet rest."""

PLAIN_LEARN_EVERY = 64  # in a long run of plain steps, one in this many is learned from (see PlainRun.is_quiet)


class PlainRun:
    """Plain steps since the last speculative one, and those kept as their batch size and time only (quiet).

    Once a run has settled (more than `settle_steps` plain steps since speculation), its steps
    are learned from at 1, 2, 4, ..., 64 of the run in a power-of-two batch-size bucket (the cost
    model's: it learns per bucket), then one in PLAIN_LEARN_EVERY; the others are quiet:
    DepthScheduler.observe keeps only their batch size and time (its full path cost ~60-90 us a
    step inside the engine, cold caches, 8% of a plain step at B = 1, and plain steps in a run
    differ by little more than noise) and records them in bulk later. The bucket, not the batch
    size: a draining batch changes size nearly every step, and took the full path at each (~74 us).
    """

    def __init__(self, settle_steps: int) -> None:
        self._settle_steps = settle_steps
        self.since_speculative = settle_steps  # plain steps since the last speculative one (none yet: settled)
        self.batch_size = 0  # of the last plain step learned from
        self.num_at_batch = 0  # plain steps in its bucket since the bucket changed or speculation (not a probe) ran
        self.quiet_s: list[float] = []  # realized times of quiet steps not yet recorded
        self.quiet_b: list[int] = []  # and their batch sizes
        self._quiet_bits = -1  # once the run has settled, the bit length of that batch size (its bucket), else -1

    def is_quiet(self, batch_size: int, k: int, step_s: float) -> bool:
        """Count one observed step; True if it is quiet (only its batch size and time are kept)."""
        if k == 0 and batch_size.bit_length() == self._quiet_bits:
            n = self.num_at_batch = self.num_at_batch + 1
            if n & (n - 1) and n % PLAIN_LEARN_EVERY:
                self.since_speculative += 1
                self.quiet_s.append(step_s)
                self.quiet_b.append(batch_size)
                return True
            return False
        if k == 0:
            same_bucket = self.batch_size.bit_length() == batch_size.bit_length()
            self.num_at_batch = self.num_at_batch + 1 if same_bucket else 0
        return False

    def learned(self, batch_size: int, k: int, *, is_probe: bool) -> bool:
        """A step took the full path; True if it is a switch (a plain step right after speculation: they cost
        1.2-1.6x a plain step in a run of them on the zoo and price the switch, not plain decoding).

        A probe does not restart the count of plain steps in the bucket: plain's price is as calibrated
        after it as before (restarting re-learned plain at 1, 2, 4, ... and re-planned every 4-30 steps after
        every probe: at B = 1 on the zoo ~10 re-plans of ~120 us inside the engine per probe, ~5 us a step)."""
        self.since_speculative = self.since_speculative + 1 if k == 0 else 0
        if k > 0 and not is_probe:
            self.num_at_batch = 0
        if k == 0:
            self.batch_size = batch_size
        settled = k == 0 and self.since_speculative > self._settle_steps
        self._quiet_bits = batch_size.bit_length() if settled else -1
        return 0 < self.since_speculative <= self._settle_steps

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
