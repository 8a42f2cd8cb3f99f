"""Generated ids travel as runs: a Deliver of a whole packed segment of a sender's generated ids names them as
(prefix, first) with no per-item list, from a local sender and through a remote producer's PutBatch alike; the
consumer hands over exactly the ids put_many returned, once each, and ids written out still travel as lists."""

import sys
import time
from pathlib import Path

import zmq

from rollspec.transport.broker import Broker
from rollspec.transport.config import ConsumerConfig, ProducerConfig, QueueConfig
from rollspec.transport.consumer import ZmqConsumer
from rollspec.transport.producer import ZmqProducer
from rollspec.transport.protocol import Deliver, deliver_lists

sys.path.insert(0, str(Path(__file__).parent))
import raw_peers  # noqa: E402


def test_a_local_senders_generated_ids_arrive_as_one_compact_deliver():
    with Broker([QueueConfig(name="q")]) as broker:
        peer = raw_peers.connect(zmq.Context.instance(), broker.address, "consumer", window_items=8)
        try:
            deadline = time.monotonic() + 5
            while broker.stats("q").consumers < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            ids = broker.sender("q").put_many([raw_peers.prompt(f"p{i}") for i in range(5)])
            msg = raw_peers.next_message(peer)
            assert type(msg) is Deliver and msg.ids == [] and msg.live == [] and msg.attempts == [1]
            assert msg.sizes == [] and msg.nframes == [] and msg.count == 5
            assert deliver_lists(msg, 100).ids == ids
            broker.sender("q").put_many([raw_peers.prompt("x")], msg_ids=["x-1"])  # written out: a list
            msg = raw_peers.next_message(peer)
            assert type(msg) is Deliver and msg.ids == ["x-1"] and msg.id_prefix == ""
        finally:
            peer.close(linger=0)


def test_a_remote_producers_generated_ids_reach_the_consumer_once_each():
    with Broker([QueueConfig(name="q")]) as broker, \
            ZmqProducer(broker.address, "q", config=ProducerConfig(batch_items=16)) as producer:
        put = producer.put_many([raw_peers.prompt(f"p{i}") for i in range(40)])
        put += producer.put_many([raw_peers.prompt(f"p{i}") for i in range(40, 44)], msg_ids=["a", "b", "c", "d"])
        assert producer.flush(10)
        consumer = ZmqConsumer(broker.address, "q", config=ConsumerConfig(window_items=64))
        try:
            seen = []
            while len(seen) < len(put):
                batch = consumer.get_batch(64, timeout_s=10)
                assert batch, f"stalled after {len(seen)} items"
                seen += [d.msg_id for d in batch]
                consumer.ack_many(batch)
            assert seen == put and consumer.get_batch(10, timeout_s=0.3) == []
        finally:
            consumer.close()
        assert broker.stats("q").acked == 44 and broker.stats("q").duplicates_dropped == 0


def test_generated_runs_reach_the_application_exactly_once_under_drop_dup_reorder_delay_and_a_dead_consumer():
    """Parcels of generated ids held per parcel (16+ items) and remembered as ranges, under lost, duplicated and
    reordered Delivers, acks and confirmations, and a consumer that stops acking midway (its leases expire and its
    items go to another): every id once to an application that acked it, none lost."""
    from rollspec.transport.faults import FaultPlan

    faults = FaultPlan(seed=5, drop=0.10, duplicate=0.10, reorder=0.05, delay=0.10, max_delay_s=0.02, corrupt=0.02)
    queue = QueueConfig(name="q", capacity=512, lease_s=1.0, lost_after_s=0.3)
    with Broker([queue], faults=faults.derive(1)) as broker:
        config = ConsumerConfig(window_items=96, heartbeat_s=0.05)
        quitter = ZmqConsumer(broker.address, "q", config=config, faults=faults.derive(2))
        worker = ZmqConsumer(broker.address, "q", config=config, faults=faults.derive(3))
        sender = broker.sender("q", ProducerConfig(batch_items=32))
        put = []
        for _ in range(12):
            put += sender.put_many([raw_peers.prompt("p") for _ in range(32)])
        acked: list[str] = []
        try:
            taken = quitter.get_batch(40, timeout_s=5)  # taken, never acked: the quitter goes silent after this
            assert taken
            quitter.close(timeout_s=0)  # no detach on the wire is guaranteed (faults): leases expire or are released
            deadline = time.monotonic() + 60
            while len(set(acked)) < len(put) and time.monotonic() < deadline:
                batch = worker.get_batch(64, timeout_s=0.2)
                acked += [d.msg_id for d in batch]
                worker.ack_many(batch)
        finally:
            worker.close()
        assert sorted(acked) == sorted(put), "each generated id exactly once to the application that acked it"
        stats = broker.stats("q")
        assert stats.redelivered > 0, "the quitter's items went to the worker"
        assert stats.acked == len(put) and not stats.dropped and stats.depth == 0
