"""The broker's local sender delivers on its own thread while inside put / put_many (SharedIoLoop with
watch_socket: the socket is handed between that thread and the I/O thread under a lock). These tests
pin what that changes and what must still hold when the application stops calling: the I/O thread
keeps answering peers, expiring leases and redelivering. Raw DEALER sockets play the peers, so the
tests see exactly which messages the broker sends."""

import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from rollspec.transport.broker import Broker
from rollspec.transport.broker_core import BrokerCore
from rollspec.transport.config import QueueConfig
from rollspec.transport.consumer import ZmqConsumer
from rollspec.transport.protocol import Deliver, PutAck, deliver_lists

sys.path.insert(0, str(Path(__file__).parent))
import raw_peers  # noqa: E402


@pytest.fixture
def peers():
    """A broker with one queue (short leases) and a factory of raw DEALER peers connected to it."""
    broker = Broker([QueueConfig(name="q", lease_s=0.5, lost_after_s=5.0)])
    context = zmq.Context()
    sockets: list[zmq.Socket] = []

    def peer(role: str, window_items: int = 4) -> zmq.Socket:
        sockets.append(raw_peers.connect(context, broker.address, role, window_items))
        return sockets[-1]

    yield broker, peer
    for socket in sockets:
        socket.close(linger=0)
    context.term()
    broker.close()


def _registered(broker: Broker, consumers: int) -> None:
    deadline = time.monotonic() + 5
    while broker.stats("q").consumers < consumers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert broker.stats("q").consumers == consumers


def test_a_put_is_delivered_on_the_callers_thread_when_a_consumer_has_room(peers, monkeypatch):
    broker, peer = peers
    socket = peer("consumer", window_items=8)
    _registered(broker, 1)
    threads: list[int] = []
    deliver = BrokerCore._deliver
    monkeypatch.setattr(BrokerCore, "_deliver", lambda self, parcel: (threads.append(threading.get_ident()),
                                                                      deliver(self, parcel))[1])
    sender = broker.sender("q")
    for pid in "abcde":  # one at a time: a put finding the socket held (the I/O thread's tick) wakes that thread
        sender.put(raw_peers.prompt(pid), msg_id=pid)
    assert threading.get_ident() in threads, "delivered by the caller, not only by wake-ups of the I/O thread"
    received: list[str] = []
    while len(received) < 5:  # puts that wait together may leave as one parcel (LeaseQueue.coalesce)
        received += raw_peers.next_message(socket).ids
    assert received == list("abcde")


def test_an_idle_application_still_has_leases_expire_and_items_redelivered(peers):
    broker, peer = peers
    dies = peer("consumer", window_items=2)
    _registered(broker, 1)
    broker.sender("q").put_many([raw_peers.prompt("a"), raw_peers.prompt("b")], msg_ids=["a", "b"])
    taken = raw_peers.next_message(dies)
    assert type(taken) is Deliver and deliver_lists(taken, 0).live == [0, 1]
    # The consumer goes silent and the application makes no call: only the I/O thread can notice.
    deadline = time.monotonic() + 10
    while broker.stats("q").lease_expired < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert broker.stats("q").lease_expired == 2 and broker.stats("q").depth == 2
    survivor = peer("consumer", window_items=2)
    again = raw_peers.next_message(survivor)
    assert type(again) is Deliver and again.ids == ["a", "b"] and deliver_lists(again, 0).attempts == [2, 2]
    assert broker.stats("q").redelivered == 2


def test_an_idle_application_still_has_the_broker_answer_remote_peers(peers):
    broker, peer = peers
    producer = peer("producer", window_items=8)
    replies = [raw_peers.next_message(producer) for _ in range(2)]  # the heartbeat's answer, then the credit of the next pass
    assert [type(r) for r in replies] == [PutAck, PutAck] and replies[1].granted == 8
    consumer = ZmqConsumer(broker.address, "q")
    try:
        broker.sender("q").put(raw_peers.prompt("local"), msg_id="local")
        delivery = consumer.get(timeout_s=10)
        assert delivery is not None and delivery.msg_id == "local"
        consumer.ack(delivery)
        deadline = time.monotonic() + 10
        while broker.stats("q").acked < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert broker.stats("q").acked == 1, "the ack was received while the application made no call"
    finally:
        consumer.close()


def test_puts_from_many_threads_with_a_busy_socket_arrive_exactly_once():
    broker = Broker([QueueConfig(name="q", capacity=64)])
    consumer = ZmqConsumer(broker.address, "q")
    sender = broker.sender("q")
    got: list[str] = []
    try:
        def put_range(first: int) -> None:
            for i in range(first, first + 150):
                sender.put(raw_peers.prompt(f"p{i}"), msg_id=f"p{i}", timeout_s=30)

        putters = [threading.Thread(target=put_range, args=(k * 150,)) for k in range(3)]
        for thread in putters:
            thread.start()
        deadline = time.monotonic() + 30
        while len(got) < 450 and time.monotonic() < deadline:
            batch = consumer.get_batch(16, timeout_s=1.0)
            consumer.ack_many(batch)
            got += [d.msg_id for d in batch]
        for thread in putters:
            thread.join(10)
        assert sorted(got) == sorted(f"p{i}" for i in range(450))
    finally:
        consumer.close()
        broker.close()
