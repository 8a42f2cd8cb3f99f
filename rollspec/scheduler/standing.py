"""A greedy depth choice that stands for some steps without re-planning (DepthScheduler.choose_depth)."""

from dataclasses import dataclass


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
        # speculating: at the same batch size, with no more catch-up than a steady step's
        return batch_size == self.batch_size and catch_up_tokens <= self.k + 1

    def lease_steps(self, step: int) -> int:
        """Steps after `step` for which this choice stands whatever the catch-up (a plain choice's lease)."""
        return self.until_step - step - 1 if self.k == 0 else 0

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
