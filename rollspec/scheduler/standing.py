"""A greedy depth choice that stands for some steps without re-planning (DepthScheduler.choose_depth)."""

from dataclasses import dataclass

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

    def holds(self, batch_size: int, catch_up_tokens: int, step: int) -> bool:
        """Whether the choice still stands at `step` for this batch size and catch-up width."""
        if step >= self.until_step:
            return False
        if self.k == 0:  # plain: while the batch keeps 3/4 of its rows and half the catch-up
            return 4 * batch_size >= 3 * self.batch_size and 2 * catch_up_tokens >= self.catch_up_tokens
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
        """The fewest rows a plain choice stands for: 3/4 of the planned batch (see `holds`)."""
        return (3 * self.batch_size + 3) // 4


@dataclass(slots=True)
class PlainLease:
    """Steps for which the engine decodes plainly without asking the scheduler (or the drafter for its catch-up
    width): `steps` more steps while the batch holds at least `min_batch_size` rows. The engine counts `steps`
    down; the scheduler renews it after a plain choice and revokes it (steps = 0) when weights change."""

    steps: int = 0
    min_batch_size: int = 0
