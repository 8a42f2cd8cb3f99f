"""Ack confirmations at a real broker: a confirmation rides on the consumer's next delivery (one inbound
message per delivery instead of two) and goes alone within a tick when no delivery follows. A raw DEALER
socket plays the consumer, so the test sees exactly which messages the broker sends."""

import sys
from pathlib import Path

import pytest
import zmq

from rollspec.transport import codec
from rollspec.transport.broker import Broker
from rollspec.transport.config import QueueConfig
from rollspec.transport.protocol import Ack, AckConfirm, Deliver

sys.path.insert(0, str(Path(__file__).parent))
import raw_peers  # noqa: E402


@pytest.fixture
def raw_consumer():
    broker = Broker([QueueConfig(name="q", lease_s=5.0)])
    context = zmq.Context()
    socket = raw_peers.connect(context, broker.address, "consumer", window_items=1)
    yield broker, socket
    socket.close(linger=0)
    context.term()
    broker.close()


def _ack(socket: zmq.Socket, parcel: int) -> None:
    socket.send_multipart(codec.encode(Ack(queue="q", parcels=[parcel], acked=[], rejected=[], reasons=[])))


def test_the_next_delivery_carries_the_confirmation_and_the_ack_freed_the_window(raw_consumer):
    broker, socket = raw_consumer
    broker.sender("q").put_many([raw_peers.prompt("a"), raw_peers.prompt("b")], msg_ids=["a", "b"])
    first = raw_peers.next_message(socket)
    assert type(first) is Deliver and first.ids == ["a", "b"] and first.live == [0]  # a window of one item
    _ack(socket, first.parcel)
    second = raw_peers.next_message(socket)
    assert type(second) is Deliver and second.live == [1], "the ack freed the window slot"
    assert second.confirmed_parcels == [first.parcel] and second.confirmed == []
    _ack(socket, second.parcel)
    assert type(raw_peers.next_message(socket)) is AckConfirm  # nothing left to deliver: alone, at the next tick
    stats = broker.stats("q")
    assert stats.acked == 2 and stats.in_flight == 0


def test_a_confirmation_goes_alone_when_no_delivery_follows(raw_consumer):
    broker, socket = raw_consumer
    broker.sender("q").put(raw_peers.prompt("a"), msg_id="a")
    delivery = raw_peers.next_message(socket)
    _ack(socket, delivery.parcel)

    confirm = raw_peers.next_message(socket)
    assert type(confirm) is AckConfirm and confirm.parcels == [delivery.parcel]
