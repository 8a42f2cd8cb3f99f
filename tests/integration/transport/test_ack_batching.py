"""Acks wait up to ConsumerConfig.ack_delay_s to go as one message while the broker still has half of the
consumer's window to deliver into, and go at once past half. These tests pin the three ways they leave:
together (fewer Ack messages than acks), at once when the window is half used, and by the deadline
while the application waits in get_batch (or by its heartbeat if it stops calling)."""

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rollspec.transport.broker import Broker
from rollspec.transport.config import ConsumerConfig, QueueConfig
from rollspec.transport.consumer import ZmqConsumer

sys.path.insert(0, str(Path(__file__).parent))
import raw_peers  # noqa: E402


@contextmanager
def _queue_and_consumer(**consumer_config) -> Iterator[tuple[Broker, ZmqConsumer]]:
    broker = Broker([QueueConfig(name="q")])
    consumer = ZmqConsumer(broker.address, "q", config=ConsumerConfig(**consumer_config))
    try:
        yield broker, consumer
    finally:
        consumer.close()
        broker.close()


def _wait_acked(broker: Broker, count: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while broker.stats("q").acked < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return broker.stats("q").acked


def _consume_one_by_one(consumer: ZmqConsumer, count: int) -> list[str]:
    seen: list[str] = []
    while len(seen) < count:
        delivery = consumer.get(timeout_s=10)
        assert delivery is not None, f"stalled after {len(seen)} items"
        seen.append(delivery.msg_id)
        consumer.ack(delivery)
    return seen


def _put_take_and_ack_one(broker: Broker, consumer: ZmqConsumer) -> None:
    broker.sender("q").put(raw_peers.prompt("only"), msg_id="only")
    delivery = consumer.get(timeout_s=10)
    assert delivery is not None
    consumer.ack(delivery)


def _sent(consumer: ZmqConsumer) -> int:
    return consumer.stats().faults["sent"]  # every message this consumer sent: acks, heartbeats


def test_acks_of_a_burst_go_together_and_every_item_is_acked_once():
    # The whole burst inside less than half the window, and a deadline far above the burst's pace: the acks can
    # only leave together by their deadline. (With a window of 32 the broker kept it more than half full, acks went
    # "at once" and how many shared an Ack depended on the I/O thread's latency: 52-55 Acks in ~1 of 12 runs.)
    with _queue_and_consumer(window_items=512, heartbeat_s=30, ack_delay_s=1.0) as (broker, consumer):
        ids = [f"p{i}" for i in range(200)]
        broker.sender("q").put_many([raw_peers.prompt(i) for i in ids], msg_ids=ids)
        sent_before = _sent(consumer)
        assert sorted(_consume_one_by_one(consumer, len(ids))) == sorted(ids)
        assert consumer.get_batch(1, timeout_s=1.5) == []  # the last waiting acks leave during this wait
        acks_sent = _sent(consumer) - sent_before
        assert _wait_acked(broker, len(ids), 10) == len(ids)
        # One Ack per item before batching; now the burst's acks wait for their deadline and go together.
        assert acks_sent <= len(ids) // 4, acks_sent
        assert broker.stats("q").redelivered == 0 and broker.stats("q").duplicate_acks == 0


def test_acks_go_at_once_once_half_the_window_is_used():
    with _queue_and_consumer(window_items=2, heartbeat_s=30, ack_delay_s=30) as (broker, consumer):
        ids = [f"p{i}" for i in range(20)]
        broker.sender("q").put_many([raw_peers.prompt(i) for i in ids], msg_ids=ids)
        assert sorted(_consume_one_by_one(consumer, len(ids))) == sorted(ids)  # would stall for 30 s per ack
        assert _wait_acked(broker, len(ids), 10) == len(ids)


def test_a_waiting_ack_goes_by_its_deadline_while_the_application_waits_in_get_batch():
    with _queue_and_consumer(window_items=64, heartbeat_s=30, ack_delay_s=0.05) as (broker, consumer):
        _put_take_and_ack_one(broker, consumer)
        assert broker.stats("q").acked == 0  # waiting: 1 of 64 items out, well under half the window
        assert consumer.get_batch(1, timeout_s=0.5) == []  # the ack leaves during this wait, not at a heartbeat
        assert _wait_acked(broker, 1, 5) == 1


def test_an_application_that_stops_calling_has_its_waiting_acks_sent_with_its_heartbeat():
    with _queue_and_consumer(window_items=64, heartbeat_s=0.2, ack_delay_s=0.05) as (broker, consumer):
        _put_take_and_ack_one(broker, consumer)
        assert _wait_acked(broker, 1, 5) == 1  # no further call from the application
