"""FaultInjector: each fault does what it says, deterministically for a seed."""

import pytest

from rollspec.transport.errors import ConfigError
from rollspec.transport.faults import FaultInjector, FaultPlan


def _run(plan: FaultPlan, n: int = 1000, routing_frames: int = 0):
    sent = []
    injector = FaultInjector(plan, routing_frames=routing_frames)
    for i in range(n):
        frames = [b"id", f"msg{i}".encode()] if routing_frames else [f"msg{i}".encode()]
        injector.send(frames, sent.append, now=float(i))
    return injector, sent


def test_no_faults_is_a_straight_pass_through():
    injector, sent = _run(FaultPlan())
    assert [f[0] for f in sent] == [f"msg{i}".encode() for i in range(1000)]


def test_drop_rate_is_close_to_the_plan_and_the_seed_fixes_the_sequence():
    _, sent_a = _run(FaultPlan(seed=3, drop=0.1))
    _, sent_b = _run(FaultPlan(seed=3, drop=0.1))
    _, sent_c = _run(FaultPlan(seed=4, drop=0.1))
    assert sent_a == sent_b and sent_a != sent_c
    assert 850 <= len(sent_a) <= 950


def test_duplicate_sends_a_second_copy():
    injector, sent = _run(FaultPlan(seed=1, duplicate=0.05))
    assert len(sent) == 1000 + injector.counts.duplicated and injector.counts.duplicated > 20
    payloads = [f[0] for f in sent]
    assert set(payloads) == {f"msg{i}".encode() for i in range(1000)}


def test_reorder_swaps_a_held_message_behind_the_next_one():
    injector, sent = _run(FaultPlan(seed=2, reorder=0.2, max_delay_s=100.0))
    order = [int(f[0][3:]) for f in sent]
    assert sorted(order) == list(range(len(order))) or injector._held is not None
    assert order != sorted(order) and injector.counts.reordered > 50


def test_delayed_messages_leave_only_when_due_and_flush_releases_the_rest():
    plan = FaultPlan(seed=5, delay=1.0, max_delay_s=10.0)
    injector, sent = FaultInjector(plan), []
    for i in range(5):
        injector.send([f"m{i}".encode()], sent.append, now=0.0)
    assert sent == []
    due = injector.release_due(sent.append, now=5.0)
    assert all(f[0].startswith(b"m") for f in sent) and (due is None or due > 5.0)
    injector.flush(sent.append)
    assert sorted(f[0] for f in sent) == [f"m{i}".encode() for i in range(5)]


def test_corrupt_flips_one_bit_and_never_touches_routing_frames():
    injector, sent = _run(FaultPlan(seed=7, corrupt=1.0), n=200, routing_frames=1)
    assert injector.counts.corrupted == 200
    for i, (identity, payload) in enumerate(sent):
        assert bytes(identity) == b"id"
        diff = [a ^ b for a, b in zip(bytes(payload), f"msg{i}".encode())]
        assert sum(bin(d).count("1") for d in diff) == 1


def test_bad_probabilities_are_rejected():
    with pytest.raises(ConfigError):
        FaultPlan(drop=1.5)
