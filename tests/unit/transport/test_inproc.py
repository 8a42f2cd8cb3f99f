"""The in-process channel honours the work-queue contract (shared LeaseQueue core, no sockets)."""

import threading
import time

import pytest
import torch

from rollspec.transport.config import QueueConfig
from rollspec.transport.errors import BackPressureTimeout, ChannelClosed, SchemaError
from rollspec.transport.inproc import InProcQueue
from rollspec.transport.schemas import PromptItem, Trajectory


def _prompt(i: int) -> PromptItem:
    return PromptItem(prompt_id=f"p{i}", group_id="g", sample_index=0, token_ids=[i, i + 1], policy_version=0)


def test_items_round_trip_as_private_copies():
    hub = InProcQueue(QueueConfig(name="q"))
    logprobs = torch.tensor([-1.0, -2.0])
    traj = Trajectory(prompt_id="p", group_id="g", sample_index=0, prompt_token_ids=[1], token_ids=[2, 3],
                      logprobs=logprobs, policy_version=1, draft_version=1, accepted_per_position=[1],
                      proposed_per_position=[1], finish_reason="stop")
    hub.sender().put(traj, msg_id="t1")
    delivery = hub.receiver().get(timeout_s=1.0)
    assert delivery.msg_id == "t1" and delivery.attempt == 1
    assert torch.equal(delivery.item.logprobs, logprobs) and delivery.item.logprobs.data_ptr() != logprobs.data_ptr()
    with pytest.raises(SchemaError):
        hub.sender().put({"not": "a schema"})


def test_full_queue_back_pressures_until_an_ack_frees_a_slot():
    hub = InProcQueue(QueueConfig(name="q", capacity=2))
    sender, receiver = hub.sender(), hub.receiver()
    sender.put(_prompt(0))
    sender.put(_prompt(1))
    with pytest.raises(BackPressureTimeout):
        sender.put(_prompt(2), timeout_s=0.05)
    receiver.ack(receiver.get(timeout_s=1.0))
    sender.put(_prompt(2), timeout_s=1.0)
    assert hub.stats().enqueued == 3


def test_silent_receiver_loses_its_lease_to_another():
    hub = InProcQueue(QueueConfig(name="q", lease_s=0.2))
    hub.sender().put(_prompt(0))
    dead = hub.receiver()
    first = dead.get(timeout_s=1.0)
    survivor = hub.receiver()
    again = survivor.get(timeout_s=2.0)
    assert again is not None and again.msg_id == first.msg_id and again.attempt == 2
    survivor.ack(again)
    assert hub.stats().acked == 1 and hub.stats().lease_expired == 1


def test_closed_receiver_returns_its_items_at_once():
    hub = InProcQueue(QueueConfig(name="q", lease_s=60.0))
    hub.sender().put(_prompt(0))
    quitter = hub.receiver()
    assert quitter.get(timeout_s=1.0) is not None
    quitter.close()
    with pytest.raises(ChannelClosed):
        quitter.get(timeout_s=0.0)
    assert hub.receiver().get(timeout_s=1.0).attempt == 2


def test_same_message_id_is_delivered_once():
    hub = InProcQueue(QueueConfig(name="q"))
    sender = hub.sender()
    for _ in range(3):
        sender.put(_prompt(0), msg_id="same")
    receiver = hub.receiver()
    assert receiver.get(timeout_s=1.0).msg_id == "same"
    assert receiver.get(timeout_s=0.05) is None
    assert hub.stats().duplicates_dropped == 2


def test_many_producers_and_consumers_each_item_exactly_once():
    prompts = InProcQueue(QueueConfig(name="prompts", capacity=16))
    results = InProcQueue(QueueConfig(name="results", capacity=10_000))
    n_producers, per_producer = 3, 200

    def produce(k):
        sender = prompts.sender()
        for i in range(per_producer):
            sender.put(_prompt(k * per_producer + i), msg_id=f"{k}:{i}")

    def consume(stop):
        receiver, out = prompts.receiver(window_items=4), results.sender()
        while not stop.is_set():
            for delivery in receiver.get_batch(8, timeout_s=0.05):
                out.put(delivery.item, msg_id=f"done:{delivery.msg_id}")
                receiver.ack(delivery)

    stop = threading.Event()
    threads = [threading.Thread(target=consume, args=(stop,)) for _ in range(3)]
    threads += [threading.Thread(target=produce, args=(k,)) for k in range(n_producers)]
    for t in threads:
        t.start()
    sink, seen = results.receiver(window_items=10_000), []
    deadline = time.monotonic() + 20
    while len(seen) < n_producers * per_producer and time.monotonic() < deadline:
        for delivery in sink.get_batch(100, timeout_s=0.1):
            seen.append(delivery.msg_id)
            sink.ack(delivery)
    stop.set()
    for t in threads:
        t.join()
    assert sorted(seen) == sorted(f"done:{k}:{i}" for k in range(n_producers) for i in range(per_producer))
