"""A consumer's application thread receives and acks on the socket itself while inside get_batch / ack
(SharedIoLoop); its I/O thread only wakes for timers. These tests pin what must still hold when the
application stops calling: its leases stay alive, and deliveries that reached the process but were not
read yet are reported as held (not lost in transit), then handed over once, on first attempt."""

import sys
import time
from pathlib import Path

from rollspec.transport.broker import Broker
from rollspec.transport.config import ConsumerConfig, QueueConfig
from rollspec.transport.consumer import ZmqConsumer

sys.path.insert(0, str(Path(__file__).parent))
import raw_peers  # noqa: E402


def test_an_idle_application_keeps_its_leases_and_its_unread_deliveries():
    broker = Broker([QueueConfig(name="q", lease_s=0.5, lost_after_s=0.3)])
    consumer = ZmqConsumer(broker.address, "q", config=ConsumerConfig(window_items=8, heartbeat_s=0.1))
    try:
        sender = broker.sender("q")
        sender.put(raw_peers.prompt("first"), msg_id="first")
        first = consumer.get(timeout_s=10)
        assert first is not None and first.msg_id == "first"
        sender.put_many([raw_peers.prompt(f"p{i}") for i in range(3)], msg_ids=[f"p{i}" for i in range(3)])
        deadline = time.monotonic() + 10
        while broker.stats("q").in_flight < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.5)  # the application computes: 3 lease periods, 5 lost-in-transit periods, no calls
        stats = broker.stats("q")
        assert (stats.in_flight, stats.lease_expired, stats.lost_in_transit, stats.redelivered) == (4, 0, 0, 0)
        rest = consumer.get_batch(8, timeout_s=5)
        assert [(d.msg_id, d.attempt) for d in rest] == [("p0", 1), ("p1", 1), ("p2", 1)]
        consumer.ack_many([first, *rest])
        consumer.close()
        assert broker.stats("q").acked == 4 and broker.stats("q").in_flight == 0
    finally:
        broker.close()
