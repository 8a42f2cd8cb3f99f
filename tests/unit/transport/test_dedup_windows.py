"""Dedup windows forget whole batches: at least the last `window` ids stay remembered, memory stays bounded."""

from rollspec.transport.config import QueueConfig
from rollspec.transport.dedup import BoundedIds
from rollspec.transport.lease_queue import LeaseQueue


def test_bounded_ids_remember_at_least_the_last_capacity_and_at_most_one_batch_more():
    done = BoundedIds(10)
    added: list[str] = []
    for start in range(0, 60, 4):
        batch = [f"m{i}" for i in range(start, start + 4)]
        done.add_many(batch)
        added += batch
        assert all(msg_id in done for msg_id in added[-10:])
        assert len(done.ids) == len(done) <= 10 + 4
    assert "m0" not in done  # forgotten: the window is bounded
    done.add_many(["m59", "x", "x"])  # a repeat and a duplicate within the batch: "x" once, m59 kept
    assert "x" in done and "m59" in done
    assert len(done.ids) == len(done)  # "x" counted once, in a batch that will be forgotten in turn
    done.add_many(["z", "z"])  # only a repeat inside the batch, nothing seen before: "z" once
    assert "z" in done and len(done.ids) == len(done)
    done.add("y")
    assert "y" in done and "x" in done


def test_ids_known_absent_are_added_in_one_pass_and_a_repeat_among_them_counted_once():
    done = BoundedIds(4)
    done.add_absent(["a", "b"])
    done.add_absent(["c", "c"])  # a repeat inside the batch (never from a consumer's acks): "c" once
    assert {"a", "b", "c"} <= done.ids and len(done.ids) == len(done) == 3
    for start in range(0, 12, 2):
        done.add_absent([f"m{start}", f"m{start + 1}"])
    assert "a" not in done and len(done.ids) == len(done) <= 4 + 2  # bounded as add_many


def test_queue_dedup_window_rejects_recent_ids_and_forgets_old_ones():
    q = LeaseQueue(QueueConfig(name="q", capacity=4, dedup_window=16))
    for start in range(0, 40, 4):
        assert q.offer([f"m{i}" for i in range(start, start + 4)], [1] * 4, None) == 4
        q.touch("c", 0.0, 100, 1 << 40)
        for parcel in q.dispatch(0.0):
            q.ack_parcels("c", [parcel.seq])
    assert q.offer([f"m{i}" for i in range(24, 40)], [1] * 16, None) == 0  # the last 16 are remembered
    assert q.offer(["m0", "m1"], [1, 1], None) == 2  # long forgotten: new again
    assert q.stats.duplicates_dropped == 16
