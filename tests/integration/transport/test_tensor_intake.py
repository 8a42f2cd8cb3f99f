"""A delivery holding one item with tensor frames (a large tensor's segment) is decoded at intake, by
whichever thread receives it (consumer_core._take_tensor_item), not queued raw for get_batch to decode.
These pin what that path must keep: exactly once to the application under drop / duplicate / reorder /
delay with the tensor's bytes intact, and an undecodable item refused to the broker with its reason."""

import time

import pytest
import torch

from rollspec.transport.broker import Broker
from rollspec.transport.config import ConsumerConfig, ProducerConfig, QueueConfig
from rollspec.transport.consumer import ZmqConsumer
from rollspec.transport.faults import FaultPlan
from rollspec.transport.fields import limit
from rollspec.transport.registry import SchemaRegistry, register_schema

SENT, STRICT = SchemaRegistry(), SchemaRegistry()


@register_schema("test.tensor_intake", 1, registry=SENT)
class AnyTensor:
    index: int
    data: torch.Tensor


@register_schema("test.tensor_intake", 1, registry=STRICT)
class FloatTensor:
    """The receiver's view of the same tag: float32 only."""

    index: int
    data: torch.Tensor = limit(dtypes=(torch.float32,))


@pytest.mark.parametrize("checksum_tensors", [False, True])
def test_tensor_items_reach_the_application_once_and_intact_under_faults(checksum_tensors):
    count = 120
    # With tensor CRCs on, damaged frames (header, body or tensor) are refused too and come again.
    faults = FaultPlan(seed=5, drop=0.10, duplicate=0.05, reorder=0.05, delay=0.10, max_delay_s=0.02,
                       corrupt=0.05 if checksum_tensors else 0.0)
    broker = Broker([QueueConfig(name="q", capacity=256, lease_s=5.0, lost_after_s=0.3)], faults=faults.derive(1))
    consumer = ZmqConsumer(broker.address, "q", registry=STRICT, faults=faults.derive(2),
                           config=ConsumerConfig(window_items=8, heartbeat_s=0.1))
    try:
        sender = broker.sender("q", ProducerConfig(batch_items=1, checksum_tensors=checksum_tensors))
        items = [AnyTensor(index=i, data=torch.arange(i, i + 1000, dtype=torch.float32).reshape(10, 100))
                 for i in range(count)]
        sender.put_many(items, msg_ids=[f"t{i}" for i in range(count)], timeout_s=60.0)
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while len(set(seen)) < count and time.monotonic() < deadline:
            batch = consumer.get_batch(16, timeout_s=0.2)
            for delivery in batch:
                index = int(delivery.msg_id[1:])
                assert type(delivery.item) is FloatTensor and delivery.item.index == index
                assert torch.equal(delivery.item.data, items[index].data)
                seen.append(delivery.msg_id)
            consumer.ack_many(batch)
        assert sorted(seen) == sorted(f"t{i}" for i in range(count))  # each once, none twice
        assert consumer.stats().duplicates_dropped > 0  # the duplicating fault reached this path
        if checksum_tensors:
            assert consumer.stats().rejected.get("checksum", 0) > 0  # and so did the corrupting one
    finally:
        consumer.close()
        broker.close()


def test_an_undecodable_tensor_item_is_refused_while_the_application_is_not_calling():
    broker = Broker([QueueConfig(name="q")])
    consumer = ZmqConsumer(broker.address, "q", registry=STRICT, config=ConsumerConfig(heartbeat_s=0.1))
    try:
        sender = broker.sender("q", ProducerConfig(batch_items=1))
        sender.put(AnyTensor(index=0, data=torch.zeros(4)), msg_id="good")
        first = consumer.get(timeout_s=10)
        assert first is not None and first.msg_id == "good"
        consumer.ack(first)
        sender.put(AnyTensor(index=1, data=torch.zeros(4, dtype=torch.int64)), msg_id="bad")
        deadline = time.monotonic() + 10
        while not broker.stats("q").dropped and time.monotonic() < deadline:
            time.sleep(0.02)  # no get: the I/O thread receives (heartbeat), decodes and refuses it
        assert [(d.msg_id, d.reason) for d in broker.drain_dropped("q")] == [("bad", "rejected:invalid_field")]
        assert consumer.stats().rejected == {"invalid_field": 1}
        assert consumer.get_batch(8, timeout_s=0.1) == []
    finally:
        consumer.close()
        broker.close()
