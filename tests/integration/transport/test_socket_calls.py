"""The I/O loop's own multipart send / receive (pyzmq's Cython socket, int flags): a message goes whole
or not at all when the peer has no room, zero-copy frames arrive intact, and a failed I/O thread
surfaces in the application's next call as ChannelClosed."""

import sys
from pathlib import Path

import pytest
import torch
import zmq

from rollspec.transport.broker import Broker
from rollspec.transport.config import ConsumerConfig, QueueConfig
from rollspec.transport.consumer import ZmqConsumer
from rollspec.transport.errors import ChannelClosed
from rollspec.transport.io_loop import is_readable, recv_frames, send_frames

sys.path.insert(0, str(Path(__file__).parent))
import raw_peers  # noqa: E402


def test_multipart_goes_whole_or_raises_again_and_arrives_intact():
    ctx = zmq.Context()
    sender, receiver = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    try:
        sender.set_hwm(1)
        receiver.set_hwm(1)
        address = f"ipc:///tmp/rollspec-socket-calls-{id(ctx)}"
        receiver.bind(address)
        sender.connect(address)
        tensor = torch.arange(1 << 16, dtype=torch.int32)
        sent = 0
        with pytest.raises(zmq.Again):
            for _ in range(100):  # the pipes fill up: then a send raises before any part goes
                send_frames(sender, [b"head", memoryview(tensor.numpy()).cast("B"), b"tail"])
                sent += 1
        assert 1 <= sent < 100
        item = [(receiver, zmq.POLLIN)]
        got = 0
        while zmq.zmq_poll(item, 1000) and is_readable(item):
            parts = recv_frames(receiver)
            assert [p.bytes for p in (parts[0], parts[2])] == [b"head", b"tail"]
            assert torch.equal(torch.frombuffer(parts[1].buffer, dtype=torch.int32), tensor)
            got += 1
            if got == sent:
                break
        assert got == sent and not is_readable(item)
    finally:
        sender.close(linger=0)
        receiver.close(linger=0)
        ctx.term()


def test_a_failed_io_thread_closes_the_consumer_for_the_application():
    broker = Broker([QueueConfig(name="q")])
    consumer = ZmqConsumer(broker.address, "q", config=ConsumerConfig(heartbeat_s=0.05))
    try:
        broker.sender("q").put(raw_peers.prompt("a"), msg_id="a")
        assert consumer.get(timeout_s=10) is not None

        def broken(now: float) -> float:
            raise RuntimeError("injected")

        consumer._core.service = broken  # the I/O thread's next heartbeat fails
        consumer._loop._thread.join(10)
        assert not consumer._loop._thread.is_alive()
        with pytest.raises(ChannelClosed):
            consumer.get(timeout_s=0.1)
    finally:
        consumer._loop.stop()
        broker.close()
