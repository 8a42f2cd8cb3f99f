"""The lockstep loop (bench/lockstep.py) on fake steppers and a fake clock: it advances the stream that has used the
least time, stops each within one step of its budget, counts tokens exactly (in-flight rows included), refills
rounds, and identical streams on a drifting machine read a ratio of 1 where whole runs one after another do not."""

import math
from types import SimpleNamespace

import pytest

from bench.lockstep import Clocks, Stream, run_lockstep
from bench.scheduler_stats import paired_ci


class Machine:
    """A fake clock: a step's cost is stretched by the machine's slowdown at that moment (co-tenant drift)."""

    def __init__(self, slowdown=lambda t: 1.0) -> None:
        self.now = 0.0
        self.slowdown = slowdown

    def spend(self, cost_s: float) -> None:
        self.now += cost_s * self.slowdown(self.now)

    def clocks(self) -> Clocks:
        return Clocks(thread=lambda: self.now, wall=lambda: 2.0 * self.now, process=lambda: self.now)


class FakeEngine:
    """Continuous batching in miniature: up to `batch` rows, each gaining `tokens_per_step` tokens a step (its
    first at admission, in the same step) until its length; `emitted` is the ground truth."""

    def __init__(self, machine: Machine, lengths: list[int], *, batch: int, step_s: float,
                 tokens_per_step: int = 1, log: list | None = None, name: str = "") -> None:
        self.machine, self.batch, self.step_s, self.tokens_per_step = machine, batch, step_s, tokens_per_step
        self.waiting = list(lengths)
        self.rows: list[SimpleNamespace] = []
        self.emitted = 0
        self.log, self.name = log, name

    def has_unfinished(self) -> bool:
        return bool(self.rows or self.waiting)

    def add(self, lengths: list[int]) -> None:
        self.waiting.extend(lengths)

    def step(self) -> list:
        if self.log is not None:
            self.log.append(self.name)
        while self.waiting and len(self.rows) < self.batch:
            self.rows.append(SimpleNamespace(num_generated=0, length=self.waiting.pop(0)))
        for row in self.rows:
            gained = min(self.tokens_per_step, row.length - row.num_generated)
            row.num_generated += gained
            self.emitted += gained
        done = [SimpleNamespace(token_ids=(0,) * r.num_generated) for r in self.rows if r.num_generated == r.length]
        self.rows = [r for r in self.rows if r.num_generated < r.length]
        self.machine.spend(self.step_s * (1 + 0.1 * len(self.rows)))
        return done


def _stream(name, machine, *, lengths=(3, 5, 2, 7), batch=2, step_s=1.0, **kwargs):
    engine = FakeEngine(machine, [], batch=batch, step_s=step_s, name=name, **kwargs)
    calls = []

    def new_round():
        calls.append(len(calls))
        engine.add(list(lengths))
        return engine

    stream = Stream(name, new_round, lambda: {"emitted": engine.emitted})
    return stream, engine, calls


def test_the_loop_advances_the_stream_that_has_used_the_least_time():
    machine, log = Machine(), []
    streams = [_stream(name, machine, step_s=s, log=log)[0] for name, s in (("a", 1.0), ("b", 3.0), ("c", 0.4))]
    used_before, chosen = [], []

    def spy(stream):
        advance = stream.advance

        def wrapped(block_s, clocks):
            used_before.append({s.name: s.used_s for s in streams})
            chosen.append(stream.name)
            advance(block_s, clocks)
        return wrapped

    for s in streams:
        s.advance = spy(s)
    run_lockstep(streams, until_s=60.0, block_s=10.0, clocks=machine.clocks())
    assert len(set(chosen)) == 3 and chosen == log
    for used, name in zip(used_before, chosen):
        budgeted = {n: u for n, u in used.items() if u < 60.0}
        assert used[name] == min(budgeted.values())


def test_every_stream_stops_within_one_step_of_its_budget_and_focus_goes_on():
    machine = Machine()
    streams = [_stream(n, machine, step_s=s)[0] for n, s in (("a", 1.0), ("b", 3.0))]
    run_lockstep(streams, until_s=40.0, block_s=10.0, clocks=machine.clocks())
    for stream in streams:
        assert 40.0 <= stream.used_s < 40.0 + 3.0 * 1.2 + 1e-9
        assert len(stream.blocks) == 4
        assert all(abs(b.tcpu_s - 10.0) < 3.0 * 1.2 for b in stream.blocks)  # a block's steps are those begun in it
    run_lockstep(streams[:1], until_s=60.0, block_s=10.0, clocks=machine.clocks())
    assert 60.0 <= streams[0].used_s < 61.3 and len(streams[0].blocks) == 6
    assert 40.0 <= streams[1].used_s < 44.0 and len(streams[1].blocks) == 4


def test_tokens_are_counted_exactly_including_rows_in_flight():
    machine = Machine()
    stream, engine, _ = _stream("a", machine, lengths=(9, 4, 13, 6, 11), batch=3, tokens_per_step=2)
    run_lockstep([stream], until_s=23.0, block_s=5.0, clocks=machine.clocks())
    assert engine.rows  # it stopped mid-round: in-flight rows hold generated tokens
    assert sum(b.tokens for b in stream.blocks) == engine.emitted
    assert [b.counters["emitted"] for b in stream.blocks] == [b.tokens for b in stream.blocks]
    # Block by block too: stepping on, the counts already taken do not change.
    before = [b.tokens for b in stream.blocks]
    run_lockstep([stream], until_s=40.0, block_s=5.0, clocks=machine.clocks())
    assert [b.tokens for b in stream.blocks[:len(before) - 1]] == before[:-1]
    assert sum(b.tokens for b in stream.blocks) == engine.emitted


def test_a_stream_gets_its_next_round_when_its_engine_runs_dry():
    machine = Machine()
    stream, engine, calls = _stream("a", machine, lengths=(3, 5, 2, 7), batch=2)
    run_lockstep([stream], until_s=100.0, block_s=20.0, clocks=machine.clocks())
    per_round = sum((3, 5, 2, 7))
    rounds = len(calls)
    assert rounds > 3 and sum(b.rounds for b in stream.blocks) == rounds
    assert engine.emitted == sum(b.tokens for b in stream.blocks)
    assert (rounds - 1) * per_round < engine.emitted <= rounds * per_round  # no round begun before the last ended
    assert sum(b.steps for b in stream.blocks) > rounds * max(3, 5, 2, 7) / 2


def test_restart_clock_forgets_the_warm_up_and_goes_on_mid_round():
    machine = Machine()
    stream, engine, calls = _stream("a", machine, lengths=(30, 30), batch=2)
    run_lockstep([stream], until_s=5.0, block_s=5.0, clocks=machine.clocks())
    warm_tokens = engine.emitted
    stream.restart_clock()
    run_lockstep([stream], until_s=10.0, block_s=5.0, clocks=machine.clocks())
    assert len(calls) == 1 and stream.used_s >= 10.0
    assert sum(b.tokens for b in stream.blocks) == engine.emitted - warm_tokens


def _rates(stream):
    return [b.rates()["tokens_per_tcpu_s"] for b in stream.blocks]


def test_identical_streams_read_a_ratio_of_one_on_a_drifting_machine():
    # The machine slows by up to 30% over spans of ~20 steps: identical work moves between consecutive blocks.
    machine = Machine(slowdown=lambda t: 1.0 + 0.15 * (1 + math.sin(t / 3.0)))
    a, b = (_stream(n, machine, lengths=(4, 6, 5), batch=3, step_s=0.05)[0] for n in ("a", "b"))
    run_lockstep([a, b], until_s=60.0, block_s=3.0, clocks=machine.clocks())
    median, low, high = paired_ci(_rates(a), _rates(b))
    assert abs(median - 1.0) < 0.01 and high - low < 0.03
    assert max(_rates(a)) / min(_rates(a)) > 1.1  # the drift is there, in every stream alike
    # Whole runs of the same streams, one after the other, block by block: the drift does not cancel.
    machine = Machine(slowdown=lambda t: 1.0 + 0.15 * (1 + math.sin(t / 3.0)))
    a, b = (_stream(n, machine, lengths=(4, 6, 5), batch=3, step_s=0.05)[0] for n in ("a", "b"))
    ratios = []
    for until in range(3, 61, 3):
        run_lockstep([a], until_s=until, block_s=3.0, clocks=machine.clocks())
        run_lockstep([b], until_s=until, block_s=3.0, clocks=machine.clocks())
        ratios.append(_rates(a)[-1] / _rates(b)[-1])
    assert max(abs(r - 1.0) for r in ratios) > 0.05


def test_bad_block_length_is_refused():
    with pytest.raises(ValueError, match="block_s"):
        run_lockstep([], until_s=1.0, block_s=0.0)


def test_the_scheduler_bench_screens_every_contender_then_focuses_on_the_near_best():
    from argparse import Namespace

    from bench.scheduler import _measure
    from bench.scheduler_streams import block_runs

    machine = Machine()
    step_s = {"fixed-0": 1.0, "fixed-1": 0.5, "fixed-2": 3.0, "adaptive": 0.52, "adaptive-cold": 0.6}
    built = {name: _stream(name, machine, step_s=s) for name, s in step_s.items()}
    streams = {name: stream for name, (stream, _, _) in built.items()}
    at_restart = {}
    for name, stream in streams.items():  # what each engine had emitted when the warm-up ended
        stream.restart_clock = lambda s=stream, e=built[name][1]: (at_restart.setdefault(s.name, e.emitted),
                                                                    Stream.restart_clock(s))
    runs, focus = _measure(streams, Namespace(warmup_s=2.0, block_s=5.0, blocks=4, focus_blocks=6),
                           machine.clocks())
    assert focus == ["adaptive", "fixed-0", "fixed-1"]  # plain always; fixed-2 is 6x slower than fixed-1
    assert {name: len(blocks) for name, blocks in runs.items()} == {
        "fixed-0": 10, "fixed-1": 10, "fixed-2": 4, "adaptive": 10, "adaptive-cold": 4}
    assert all(s.used_s >= 50.0 for n, s in streams.items() if n in focus)
    assert runs["fixed-1"] == block_runs(streams["fixed-1"])
    assert all(abs(sum(b["tokens"] / b["tokens_per_tcpu_s"] for b in runs[n]) - streams[n].used_s) < 1e-6
               for n in runs)
    for name, (_, engine, _) in built.items():  # the warm-up's tokens are in no block
        assert 0 < at_restart[name] and sum(b["tokens"] for b in runs[name]) == engine.emitted - at_restart[name]
