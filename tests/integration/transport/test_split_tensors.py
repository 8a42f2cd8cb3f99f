"""Tensors above ProducerConfig.tensor_frame_bytes cross the work queue as several frames (over real
sockets, local and remote senders, tensor CRCs on) and come out whole and equal."""

import torch

from rollspec.transport.broker import Broker
from rollspec.transport.config import ConsumerConfig, ProducerConfig, QueueConfig
from rollspec.transport.consumer import ZmqConsumer
from rollspec.transport.producer import ZmqProducer
from rollspec.transport.registry import register_schema


@register_schema("test.split_payload", 1)
class SplitPayload:
    seq: int
    data: torch.Tensor


def test_split_tensors_arrive_whole_from_local_and_remote_senders(tmp_path):
    config = ProducerConfig(tensor_frame_bytes=1000, checksum_tensors=True)
    tensors = [torch.randn(n) for n in (10, 250, 251, 4096)] + [torch.arange(3000, dtype=torch.int64).view(30, 100)]
    with Broker([QueueConfig(name="q")], bind_address=f"ipc://{tmp_path}/b.sock") as broker, \
            ZmqConsumer(broker.address, "q", config=ConsumerConfig(heartbeat_s=0.1)) as consumer, \
            ZmqProducer(broker.address, "q", config=config) as remote:
        broker.sender("q", config).put_many([SplitPayload(seq=i, data=t) for i, t in enumerate(tensors)])
        remote.put_many([SplitPayload(seq=100 + i, data=t) for i, t in enumerate(tensors)])
        got = {}
        for _ in range(100):
            for delivery in consumer.get_batch(64, timeout_s=0.2):
                got[delivery.item.seq] = delivery.item.data
                consumer.ack(delivery)
            if len(got) == 2 * len(tensors):
                break
        assert consumer.stats().rejected == {}
    assert sorted(got) == list(range(len(tensors))) + [100 + i for i in range(len(tensors))]
    for i, tensor in enumerate(tensors):
        assert torch.equal(got[i], tensor) and torch.equal(got[100 + i], tensor)
