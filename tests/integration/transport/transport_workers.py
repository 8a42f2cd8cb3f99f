"""Entry points of the separate processes the transport integration tests start (spawn), plus helpers.

Imported by the tests as a top-level module (its directory is put on sys.path), so spawned children
can import these functions by name.
"""

import multiprocessing as mp
import os
import signal
import time

import torch

from rollspec.transport.config import ConsumerConfig, ProducerConfig
from rollspec.transport.consumer import ZmqConsumer
from rollspec.transport.faults import NO_FAULTS, FaultPlan
from rollspec.transport.producer import ZmqProducer
from rollspec.transport.registry import register_schema
from rollspec.transport.schemas import PromptItem

CTX = mp.get_context("spawn")


@register_schema("test.blob", 1)
class Blob:
    """A test payload of raw bytes travelling as one tensor frame."""

    index: int
    data: torch.Tensor


def prompt(i: int, payload_tokens: int = 4) -> PromptItem:
    return PromptItem(prompt_id=f"p{i}", group_id=f"g{i // 4}", sample_index=i % 4,
                      token_ids=list(range(i, i + payload_tokens)), policy_version=0)


def start(target, *args) -> mp.Process:
    proc = CTX.Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def stop_all(procs: list[mp.Process]) -> None:
    """Kill whatever is still running (only the processes this test started)."""
    for proc in procs:
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join(5)


def produce(address: str, queue: str, first: int, count: int, faults: FaultPlan, report: mp.Queue,
            blob_bytes: int = 0, window: int = 64, chunk: int = 1) -> None:
    """Put prompts (or Blobs of blob_bytes) first..first+count-1 with ids 'p<i>', `chunk` per put_many
    (one segment: several items share one lease and one ack); report ('put', i) after each and
    ('flushed', ok) at the end."""
    config = ProducerConfig(window=window, retry_s=0.3, heartbeat_s=0.1)
    producer = ZmqProducer(address, queue, config=config, faults=faults)
    report.put(("producer", os.getpid()))
    try:
        for start in range(first, first + count, chunk):
            indices = range(start, min(first + count, start + chunk))
            items = [Blob(index=i, data=torch.full((blob_bytes,), i % 251, dtype=torch.uint8)) if blob_bytes
                     else prompt(i) for i in indices]
            producer.put_many(items, msg_ids=[f"p{i}" for i in indices], timeout_s=120.0)
            for i in indices:
                report.put(("put", i))
        report.put(("flushed", producer.flush(timeout_s=60.0)))
    except Exception as exc:  # reported to the test, which fails with it
        report.put(("error", repr(exc)))
    finally:
        producer.close()


def work(address: str, in_queue: str, out_queue: str, faults: FaultPlan, report: mp.Queue, stop: mp.Event,
         hold_forever: bool = False, window_items: int = 16) -> None:
    """Consume prompts; for each, put a result with id 'r:<id>' on out_queue, then ack. Reports
    ('got', msg_id, attempt) for every delivery the application sees. With hold_forever the worker
    takes its items and never acks them (a consumer about to be killed mid-lease)."""
    consumer = ZmqConsumer(address, in_queue, faults=faults,
                           config=ConsumerConfig(window_items=window_items, heartbeat_s=0.1))
    producer = ZmqProducer(address, out_queue, faults=faults.derive(99) if faults.is_active else NO_FAULTS,
                           config=ProducerConfig(retry_s=0.3, heartbeat_s=0.1))
    try:
        while not stop.is_set():
            for delivery in consumer.get_batch(64, timeout_s=0.1):
                report.put(("got", delivery.msg_id, delivery.attempt))
                if hold_forever:
                    continue
                producer.put(delivery.item, msg_id=f"r:{delivery.msg_id}")
                consumer.ack(delivery)
        producer.flush(timeout_s=30.0)
    finally:
        producer.close()
        consumer.close()
        report.put(("stopped", os.getpid()))


def stall(address: str, queue: str, report: mp.Queue, go: mp.Event) -> None:
    """A consumer that attaches, then takes nothing until `go` is set; then drains everything it can."""
    consumer = ZmqConsumer(address, queue, config=ConsumerConfig(window_items=4, heartbeat_s=0.1))
    report.put(("attached", os.getpid()))
    go.wait()
    count = 0
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 3.0:
        batch = consumer.get_batch(16, timeout_s=0.2)
        for delivery in batch:
            consumer.ack(delivery)
            count += 1
        if batch:
            idle_since = time.monotonic()
    report.put(("drained", count))
    consumer.close()


def drain(report: mp.Queue, until, timeout_s: float) -> list:
    """Collect reports until `until(messages)` holds or timeout_s passes."""
    messages, deadline = [], time.monotonic() + timeout_s
    while not until(messages) and time.monotonic() < deadline:
        try:
            messages.append(report.get(timeout=0.1))
        except Exception:  # queue.Empty
            continue
    return messages


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def digest(weights: dict) -> int:
    """CRC32 over every tensor's name, dtype, shape and bytes."""
    import zlib

    crc = 0
    for name, tensor in weights.items():
        crc = zlib.crc32(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode(), crc)
        crc = zlib.crc32(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes(), crc)
    return crc


def subscribe(address: str, config, faults: FaultPlan, report: mp.Queue, stop: mp.Event, last: int) -> None:
    """Report ('applied', version, pid, digest) for every version seen, then ('stats', dict) on stop."""
    from rollspec.transport.weight_subscriber import WeightSubscriber

    subscriber = WeightSubscriber(address, config=config, faults=faults)
    seen = 0
    while not stop.is_set():
        current = subscriber.wait_for(seen + 1, timeout_s=0.1)
        if current is not None:
            seen = current[0]
            report.put(("applied", seen, os.getpid(), digest(current[1])))
    report.put(("stats", subscriber.stats().as_dict()))
    subscriber.close()
