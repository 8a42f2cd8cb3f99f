"""A local sender's small segments that wait in the queue together (the consumer's window is full) reach
the consumer as one parcel of up to the sender's batch size: one Deliver, one parcel ack. Every item still
arrives once, in order, and is acked once."""

import sys
from pathlib import Path

from rollspec.transport.broker import Broker
from rollspec.transport.config import ConsumerConfig, ProducerConfig, QueueConfig
from rollspec.transport.consumer import ZmqConsumer

sys.path.insert(0, str(Path(__file__).parent))
import raw_peers  # noqa: E402


def test_segments_put_while_the_consumer_was_away_arrive_as_fewer_parcels():
    with Broker([QueueConfig(name="q")]) as broker:
        sender = broker.sender("q", ProducerConfig(batch_items=64))
        ids = [f"m{i}" for i in range(160)]
        for start in range(0, 160, 16):  # ten segments of 16 items
            sender.put_many([raw_peers.prompt(i) for i in ids[start:start + 16]], msg_ids=ids[start:start + 16])
        consumer = ZmqConsumer(broker.address, "q", config=ConsumerConfig(window_items=512))
        try:
            seen, parcels = [], set()
            while len(seen) < 160:
                batch = consumer.get_batch(200, timeout_s=10)
                assert batch, f"stalled after {len(seen)} items"
                seen += [d.msg_id for d in batch]
                parcels |= {d.token >> 32 for d in batch}
                consumer.ack_many(batch)
            assert seen == ids
            assert len(parcels) == 3  # 64 + 64 + 32 items, not ten parcels of 16
            assert consumer.get_batch(10, timeout_s=0.3) == []
        finally:
            consumer.close()
        assert broker.stats("q").acked == 160 and broker.stats("q").depth == 0
