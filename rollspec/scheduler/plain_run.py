"""The run of plain steps the depth scheduler is in: which of its steps are learned from, and the quiet rest."""

PLAIN_LEARN_EVERY = 64  # in a long run of plain steps, one in this many is learned from (see PlainRun.is_quiet)


class PlainRun:
    """Plain steps since the last speculative one, and those kept as their step times only (`quiet_s`).

    Once a run at one batch size has settled (more than `settle_steps` plain steps since
    speculation), its steps are learned from at 1, 2, 4, ..., 64 of the run at that batch size,
    then one in PLAIN_LEARN_EVERY; the others are quiet: DepthScheduler.observe keeps only their
    time (its full path cost ~60-90 us a step inside the engine, cold caches, 8% of a plain step at
    B = 1, and plain steps in a run differ by little more than noise) and records them in bulk later.
    """

    def __init__(self, settle_steps: int) -> None:
        self._settle_steps = settle_steps
        self.since_speculative = settle_steps  # plain steps since the last speculative one (none yet: settled)
        self.batch_size = 0  # of the last plain step learned from
        self.predicted_s = 0.0  # plain's predicted step time then
        self.num_at_batch = 0  # plain steps at that batch size since it changed or speculation (not a probe) ran
        self.quiet_s: list[float] = []  # realized times of quiet steps not yet recorded
        self._quiet_batch = -1  # the batch size once the run has settled, else -1

    def is_quiet(self, batch_size: int, k: int, step_s: float) -> bool:
        """Count one observed step; True if it is quiet (only its time is kept, in `quiet_s`)."""
        if k == 0 and batch_size == self._quiet_batch:
            n = self.num_at_batch = self.num_at_batch + 1
            if n & (n - 1) and n % PLAIN_LEARN_EVERY:
                self.since_speculative += 1
                self.quiet_s.append(step_s)
                return True
            return False
        if k == 0:
            self.num_at_batch = self.num_at_batch + 1 if self.batch_size == batch_size else 0
        return False

    def learned(self, batch_size: int, k: int, predicted_plain_s: float, *, is_probe: bool) -> bool:
        """A step took the full path; True if it is a switch (a plain step right after speculation: they cost
        1.2-1.6x a plain step in a run of them on the zoo and price the switch, not plain decoding).

        A probe does not restart the count of plain steps at the batch size: plain's price is as calibrated
        after it as before (restarting re-learned plain at 1, 2, 4, ... and re-planned every 4-30 steps after
        every probe: at B = 1 on the zoo ~10 re-plans of ~120 us inside the engine per probe, ~5 us a step)."""
        self.since_speculative = self.since_speculative + 1 if k == 0 else 0
        if k > 0 and not is_probe:
            self.num_at_batch = 0
        if k == 0:
            self.batch_size, self.predicted_s = batch_size, predicted_plain_s
        settled = k == 0 and self.since_speculative > self._settle_steps
        self._quiet_batch = batch_size if settled else -1
        return 0 < self.since_speculative <= self._settle_steps

    def take_quiet(self) -> list[float]:
        """The quiet steps' times not yet recorded, now handed over."""
        quiet, self.quiet_s = self.quiet_s, []
        return quiet
