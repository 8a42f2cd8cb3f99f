"""bench/scheduler_cost_pair.PairedSchedulers: both schedulers asked everything, the first's answer used, mismatches
and call kinds counted."""

from types import SimpleNamespace

from bench.scheduler_cost_pair import PairedSchedulers


class FakeScheduler:
    """Plans (replaces its standing choice) every `plan_every` choices at depth `k`; a full observation every other."""

    def __init__(self, k: int, plan_every: int = 4) -> None:
        self.k, self.plan_every = k, plan_every
        self._reuse, self._stats = object(), SimpleNamespace(num_steps=0)
        self.calls: list[str] = []

    def choose_depth(self, batch_size, catch_up_tokens=0):
        self.calls.append("choose_depth")
        if len(self.calls) % self.plan_every == 1:
            self._reuse = object()
        return self.k

    def observe(self, *args):
        self.calls.append("observe")
        if len(self.calls) % 4 == 0:
            self._stats.num_steps += 1

    def plain_lease(self):
        self.calls.append("plain_lease")
        return self


def test_both_schedulers_see_every_call_the_first_answers_and_kinds_are_charged():
    base, branch = FakeScheduler(3), FakeScheduler(3)
    pair = PairedSchedulers(base, branch)
    for _ in range(8):
        assert pair.choose_depth(1, 5) == 3
        pair.observe(1, 3, [3], 1e-3, 1e-3)
    assert pair.plain_lease() is base
    assert base.calls == branch.calls and len(base.calls) == 17
    assert pair.num_mismatches == 0
    for counter in pair.ns:
        assert set(counter) == {"plan", "choose", "observe", "observe_full", "plain_lease"}


def test_a_differing_choice_is_counted_and_the_base_answer_used():
    pair = PairedSchedulers(FakeScheduler(2), FakeScheduler(5))
    assert [pair.choose_depth(1) for _ in range(3)] == [2, 2, 2]
    assert pair.num_mismatches == 3
