"""LeaseQueue: dedup, windows, acks, expiry, loss detection, and the nothing-lost-nothing-twice invariant."""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rollspec.transport.config import QueueConfig
from rollspec.transport.lease_queue import DONE, READY, LeaseQueue

BIG = 1 << 40


def _queue(**overrides) -> LeaseQueue:
    settings = {"name": "q", "capacity": 64, "lease_s": 5.0, "lost_after_s": 1.0, "max_attempts": 3}
    return LeaseQueue(QueueConfig(**(settings | overrides)))


def _pairs(parcel) -> list[int]:
    return [n for i in parcel.indices for n in (parcel.segment.seg_id, i)]


def _ids(parcels) -> list[str]:
    return [p.segment.ids[i] for p in parcels for i in p.indices]


def test_offer_drops_duplicate_ids_within_and_across_segments():
    q = _queue()
    assert q.offer(["a", "b", "a"], [1, 1, 1], None) == 2
    assert q.offer(["b", "c"], [1, 1], None) == 1
    assert q.stats.duplicates_dropped == 2 and q.stats.depth == 3
    q.touch("c1", 0.0, 10, BIG)
    assert sorted(_ids(q.dispatch(0.0))) == ["a", "b", "c"]


def test_dispatch_respects_item_and_byte_windows_but_always_moves_one_item():
    q = _queue()
    q.offer([f"m{i}" for i in range(10)], [100] * 10, None)
    q.touch("small", 0.0, 3, BIG)
    assert len(_ids(q.dispatch(0.0))) == 3
    q.touch("bytes", 0.0, 100, 250)
    assert len(_ids(q.dispatch(0.0))) == 2
    q.touch("tiny", 0.0, 100, 1)  # an item bigger than the whole window still goes, alone
    assert len(_ids(q.dispatch(0.0))) == 1
    assert q.dispatch(0.0) == []
    assert q.stats.in_flight == 6 and q.stats.depth == 4


def test_round_robin_across_consumers():
    q = _queue()
    for i in range(6):
        q.offer([f"m{i}"], [1], None)
    for name in ("a", "b", "c"):
        q.touch(name, 0.0, 10, BIG)
    owners = [p.consumer.key for p in q.dispatch(0.0)]
    assert sorted(owners) == ["a", "a", "b", "b", "c", "c"]


def test_ack_frees_the_window_and_duplicate_acks_are_counted():
    q = _queue()
    q.offer(["a", "b"], [1, 1], None)
    q.touch("c", 0.0, 1, BIG)
    (first,) = q.dispatch(0.0)
    assert q.dispatch(0.0) == []
    q.ack("c", _pairs(first))
    q.ack("c", _pairs(first))
    assert q.stats.acked == 1 and q.stats.duplicate_acks == 1
    assert _ids(q.dispatch(0.0)) == ["b"]


def test_silent_consumer_loses_its_lease_to_another_then_item_is_dropped_after_max_attempts():
    q = _queue(max_attempts=2)
    q.offer(["a"], [1], None)
    q.touch("dead", 0.0, 10, BIG)
    assert _ids(q.dispatch(0.0)) == ["a"]
    q.touch("alive", 4.0, 10, BIG)
    q.expire(4.0)
    assert q.dispatch(4.0) == []  # lease still valid
    q.touch("alive", 6.0, 10, BIG)
    q.expire(6.0)
    (again,) = q.dispatch(6.0)
    assert again.consumer.key == "alive" and again.attempts == [2]
    assert q.stats.redelivered == 1 and q.stats.lease_expired == 1
    q.expire(20.0)  # "alive" went silent too: second attempt exhausted -> dropped with a reason
    assert [(d.msg_id, d.reason) for d in q.dropped] == [("a", "max_attempts")]
    assert q.held == 0


def test_held_report_requeues_only_items_missing_for_longer_than_lost_after():
    q = _queue()
    q.offer(["a", "b", "c"], [1, 1, 1], None)
    q.touch("c1", 0.0, 10, BIG)
    (parcel,) = q.dispatch(0.0)
    seg = parcel.segment.seg_id
    q.report_held("c1", {(seg, 0)}, now=0.5)  # too early to call anything lost
    assert q.stats.lost_in_transit == 0
    q.report_held("c1", {(seg, 0)}, now=2.0)
    assert q.stats.lost_in_transit == 2
    assert sorted(_ids(q.dispatch(2.0))) == ["b", "c"]


def test_rejected_items_are_dropped_with_the_reason_and_acks_after_requeue_count():
    q = _queue()
    q.offer(["bad", "slow"], [1, 1], None)
    q.touch("c1", 0.0, 10, BIG)
    (parcel,) = q.dispatch(0.0)
    seg = parcel.segment.seg_id
    q.ack("c1", [seg, 0], reasons=["malformed"])
    q.release("c1")  # "slow" goes back to the queue...
    q.ack("c1", [seg, 1])  # ...but its ack arrives late: done, and never delivered again
    q.touch("c2", 1.0, 10, BIG)
    assert q.dispatch(1.0) == []
    assert [(d.msg_id, d.reason) for d in q.dropped] == [("bad", "rejected:malformed")]
    assert q.stats.acked == 1 and q.held == 0


def test_a_parcel_is_acked_with_one_number_and_settled_in_bulk():
    q = _queue()
    q.offer([f"m{i}" for i in range(6)], [10] * 6, None)
    q.touch("c", 0.0, 10, BIG)
    (parcel,) = q.dispatch(0.0)
    assert parcel.indices == list(range(6)) and parcel.nbytes == 60
    q.ack_parcels("c", [parcel.seq])
    q.ack_parcels("c", [parcel.seq])  # resent ack: the segment is gone, nothing counts twice
    assert q.stats.acked == 6 and q.stats.duplicate_acks == 1
    assert q.held == 0 and q.stats.bytes_held == 0 and not q._segments and not q._parcels


def test_partly_acked_parcel_of_a_dead_consumer_goes_to_another_without_its_finished_items():
    q = _queue()
    q.offer(["a", "b", "c", "d"], [1] * 4, None)
    q.touch("dies", 0.0, 10, BIG)
    (first,) = q.dispatch(0.0)
    seg = first.segment.seg_id
    q.ack("dies", [seg, 0, seg, 1])  # a and b finished (sent as pairs: the parcel was still open)
    q.release("dies")
    q.touch("next", 1.0, 10, BIG)
    (second,) = q.dispatch(1.0)
    assert _ids([second]) == ["c", "d"] and second.attempts == [2, 2]
    q.ack_parcels("dies", [first.seq])  # the dead consumer's parcel ack arrives late: c, d done by it
    q.ack_parcels("next", [second.seq])  # ... so the second consumer's ack counts for nothing
    assert q.stats.acked == 4 and q.stats.duplicate_acks == 1 and q.held == 0


class QueueMachine(RuleBasedStateMachine):
    """Random puts, deliveries, acks, losses, silences and detaches; afterwards everything drains."""

    def __init__(self):
        super().__init__()
        self.q = _queue(capacity=1000, max_attempts=4)
        self.now = 0.0
        self.offered: set[str] = set()
        self.acked: list[str] = []
        self.leases: list = []
        self.next_id = 0

    @rule(n=st.integers(1, 5), dup=st.booleans(), size=st.integers(1, 6))
    def put(self, n, dup, size):
        ids = [f"m{self.next_id + i}" for i in range(n)]
        self.next_id += n
        if dup and self.offered:
            ids.append(sorted(self.offered)[0])
        self.q.offer(ids, [size] * len(ids), None)
        self.offered.update(ids)

    @rule(consumer=st.sampled_from(["a", "b", "c"]), window=st.integers(1, 4),
          window_bytes=st.sampled_from([BIG, 4, 9]))
    def deliver(self, consumer, window, window_bytes):
        self.q.touch(consumer, self.now, window, window_bytes)
        # A local sender delivers (or waits) on can_dispatch(): it must say exactly whether dispatch leases.
        expected = self.q.can_dispatch()
        parcels = self.q.dispatch(self.now)
        assert expected == bool(parcels)
        for parcel in parcels:
            self.leases += [(parcel, i) for i in parcel.indices]

    @precondition(lambda self: self.leases)
    @rule(k=st.integers(0, 100), reject=st.booleans())
    def ack_one(self, k, reject):
        parcel, i = self.leases.pop(k % len(self.leases))
        was_open = parcel.segment.state[i] is not DONE
        self.q.ack(parcel.consumer.key, [parcel.segment.seg_id, i], reasons=["malformed"] if reject else None)
        if was_open and not reject:
            self.acked.append(parcel.segment.ids[i])

    @precondition(lambda self: self.leases)
    @rule(k=st.integers(0, 100))
    def ack_parcel(self, k):
        parcel, _ = self.leases[k % len(self.leases)]
        state = parcel.segment.state
        newly = [parcel.segment.ids[i] for i in parcel.indices if state[i] is not DONE]
        self.q.ack_parcels(parcel.consumer.key, [parcel.seq])
        self.acked += newly
        self.leases = [(p, i) for p, i in self.leases if p is not parcel]

    @rule(consumer=st.sampled_from(["a", "b", "c"]))
    def lose_everything_in_transit(self, consumer):
        self.now += 1.5
        self.q.report_held(consumer, set(), self.now)

    @rule(dt=st.floats(0.0, 7.0))
    def time_passes(self, dt):
        self.now += dt
        self.q.expire(self.now)

    @rule(consumer=st.sampled_from(["a", "b", "c"]))
    def detach(self, consumer):
        self.q.release(consumer)

    @invariant()
    def counts_match_states(self):
        segments = self.q._segments.values()
        ready = sum(1 for s in segments for x in s.state if x is READY)
        leased = sum(1 for s in segments for x in s.state if x is not READY and x is not DONE)
        assert (ready, leased) == (self.q.stats.depth, self.q.stats.in_flight)

    def teardown(self):
        for consumer in ("a", "b", "c"):
            self.q.release(consumer)
        for _ in range(10):
            self.q.touch("drain", self.now, 1000, BIG)
            for parcel in self.q.dispatch(self.now):
                self.q.ack("drain", _pairs(parcel))
                self.acked += [parcel.segment.ids[i] for i in parcel.indices]
        dropped = [d.msg_id for d in self.q.dropped]
        assert len(self.acked) == len(set(self.acked)), "an item was acked twice"
        assert not set(self.acked) & set(dropped), "an item was both acked and dropped"
        assert set(self.acked) | set(dropped) == self.offered, "an item was lost"
        assert self.q.held == 0


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


class CoalescingQueueMachine(QueueMachine):
    """The same, with runs of up to three fresh segments leased as one parcel (as the broker does for a
    local sender's segments): merging must not lose, repeat or double-count any item."""

    def __init__(self):
        super().__init__()
        self.q.coalesce = lambda payloads: (None, min(3, len(list(payloads))))

    def teardown(self):
        super().teardown()
        assert self.q.stats.bytes_held == 0 and self.q.stats.depth == 0


TestCoalescingQueueMachine = CoalescingQueueMachine.TestCase
TestCoalescingQueueMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def _join_all(payloads):
    payloads = list(payloads)
    return "+".join(payloads), len(payloads)


def test_fresh_segments_waiting_together_are_leased_as_one_parcel_in_order():
    q = _queue()
    q.coalesce = _join_all
    q.offer(["a", "b"], [1, 1], "p1")
    q.offer(["c"], [5], "p2")
    q.offer(["d", "e"], [1, 1], "p3")
    q.touch("c1", 0.0, 10, BIG)
    parcels = q.dispatch(0.0)
    assert len(parcels) == 1 and _ids(parcels) == ["a", "b", "c", "d", "e"]
    assert parcels[0].segment.payload == "p1+p2+p3" and parcels[0].nbytes == 9
    assert (q.stats.depth, q.stats.in_flight, q.stats.bytes_held) == (0, 5, 9)
    q.ack_parcels("c1", [parcels[0].seq])
    assert (q.held, q.stats.acked, q.stats.bytes_held) == (0, 5, 0) and not q._segments


def test_a_segment_already_leased_in_part_or_holding_a_duplicate_is_not_merged():
    q = _queue()
    q.coalesce = _join_all
    q.offer(["a", "b", "c"], [1, 1, 1], "p1")
    q.touch("c1", 0.0, 2, BIG)
    first = q.dispatch(0.0)  # a and b: p1 is now partly leased
    q.offer(["d", "a"], [1, 1], "p2")  # "a" a duplicate: p2 holds a finished item
    q.offer(["e"], [1], "p3")
    q.ack_parcels("c1", [first[0].seq])
    got = q.dispatch(0.0)  # the window has room for two
    assert [(_ids([p]), p.segment.payload) for p in got] == [(["c"], "p1"), (["d"], "p2")]  # p2 not merged with p3
    q.ack_parcels("c1", [p.seq for p in got])
    assert _ids(q.dispatch(0.0)) == ["e"]
