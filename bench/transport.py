"""Transport benchmark: our work-queue channels vs raw pyzmq PUSH/PULL, and weight-broadcast time.

    .venv/bin/python -m bench.transport [--quick] [--reps N] [--out PATH]

Measured side by side in one run (raw and ours interleaved, median of --reps): messages/s for ~1 KB
messages and GB/s for 4 MiB tensor payloads over ipc:// and tcp://127.0.0.1, each sender and
receiver in its own process, reliability on (leases and acks per parcel, i.e. the items of one segment
leased to one consumer, dedup by id per item at the queue and the consumer, credit per item, CRC on
headers and segment bodies). Producers put_many in chunks of 64: each chunk is one segment.
Our producing and consuming processes stand for actors (the process hosting the broker for the
controller), so each calls actors.process_heap.freeze_startup_heap, as actors do, once its imports and
endpoints are set up and before it moves items; the raw processes do not (their bytes are not GC-tracked).
"direct" is the prompt path (the queue lives in the producing process, one hop like raw PUSH/PULL);
"relayed" is the trajectory path (producer process -> broker process -> consumer process, two hops).
Then the time to broadcast a 100 MB weight version to 4 subscriber processes.
Writes bench/results/transport.json (a full run; --out PATH: there instead) and prints the BENCHMARKS.md row.
"""

import functools
import json
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from bench.reps_cli import run_and_record
from rollspec.actors.process_heap import freeze_startup_heap

RESULT = Path(__file__).parent / "results" / "transport.json"
SMALL_BYTES = 1000
LARGE_BYTES = 4 << 20
WEIGHT_BYTES = 100 << 20
NUM_SUBSCRIBERS = 4
PUT_CHUNK = 64


@functools.cache
def _schemas():
    """Register the benchmark's message types (in every process, on first use)."""
    import torch

    from rollspec.transport import register_schema

    @register_schema("bench.item", 1)
    class BenchItem:
        seq: int
        payload: bytes

    @register_schema("bench.tensor", 1)
    class BenchTensor:
        seq: int
        data: torch.Tensor

    return BenchItem, BenchTensor


def _item(seq: int, large: bool, payload):
    item_cls, tensor_cls = _schemas()
    return tensor_cls(seq=seq, data=payload) if large else item_cls(seq=seq, payload=payload)


def _payload(large: bool):
    import torch

    return torch.full((LARGE_BYTES,), 7, dtype=torch.uint8) if large else os.urandom(SMALL_BYTES)


def _page_faults() -> int:
    """Minor page faults of this process so far (fresh receive buffers fault in page by page)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# --- receivers (child processes) -----------------------------------------------------------------
def _raw_pull(address: str, total: int, warmup: int, large: bool, with_codec: bool, report) -> None:
    import zmq

    from rollspec.transport import decode

    _schemas()
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.connect(address)
    report.put("ready")
    start = cpu = faults = None
    for n in range(total):
        if with_codec:
            decode([f.buffer if large else f for f in sock.recv_multipart(copy=not large)])
        else:
            sock.recv(copy=not large)
        if n + 1 == warmup:
            start, cpu, faults = time.monotonic(), time.process_time(), _page_faults()
    report.put((start, time.monotonic(), time.process_time() - cpu, _page_faults() - faults))
    sock.close(linger=0)


def _our_consume(address: str, queue: str, total: int, warmup: int, report) -> None:
    from rollspec.transport import ConsumerConfig, ZmqConsumer

    _schemas()
    consumer = ZmqConsumer(address, queue, config=ConsumerConfig(window_items=2048, window_bytes=128 << 20))
    freeze_startup_heap()
    report.put("ready")
    count, start, cpu, counted, faults = 0, None, 0.0, 0, 0
    while count < total:
        batch = consumer.get_batch(1024, timeout_s=60.0)
        if not batch:
            break
        consumer.ack_many(batch)
        count += len(batch)
        if start is None and count >= warmup:
            start, cpu, counted, faults = time.monotonic(), time.process_time(), count, _page_faults()
    end = time.monotonic()
    # CPU of the whole process (app + I/O threads) per item after warm-up, scaled to the span's items.
    scale = (total - warmup) / max(1, total - counted)
    cpu_s, faults = (time.process_time() - cpu) * scale, (_page_faults() - faults) * scale
    report.put((start, end, cpu_s, faults) if count >= total else "timeout")
    consumer.close()


def _our_produce(address: str, queue: str, total: int, large: bool, report) -> None:
    from rollspec.transport import ProducerConfig, ZmqProducer

    producer = ZmqProducer(address, queue, config=ProducerConfig(window=4096))
    freeze_startup_heap()  # before the items exist: an actor makes its items after start-up
    payload = _payload(large)
    items = [_item(i, large, payload) for i in range(min(total, 4096))]
    report.put("ready")
    cpu = time.process_time()
    _put_all(producer, items, total)
    producer.flush(timeout_s=120.0)
    report.put(("producer_cpu_s", time.process_time() - cpu))
    producer.close()


def _put_all(sender, items: list, total: int) -> None:
    """put_many in chunks of PUT_CHUNK (the consumer side uses get_batch / ack_many likewise). A chunk is a slice of
    the item pool, as an application would hand over a batch it holds (raw sends one payload over and over); building
    it item by item cost ~0.07 us per item that raw does not pay."""
    for start in range(0, total, PUT_CHUNK):
        first, n = start % len(items), min(PUT_CHUNK, total - start)
        chunk = items[first:first + n]
        if len(chunk) < n:  # the pool wraps inside this chunk
            chunk = [items[(start + i) % len(items)] for i in range(n)]
        sender.put_many(chunk, timeout_s=120.0)


def _subscribe(address: str, versions: int, report) -> None:
    from rollspec.transport import BroadcastConfig, WeightSubscriber

    subscriber = WeightSubscriber(address, config=BroadcastConfig())
    report.put("ready")
    for version in range(1, versions + 1):
        subscriber.wait_for(version, timeout_s=300.0)
        report.put((version, time.monotonic()))
    subscriber.close()


# --- one measurement each --------------------------------------------------------------------------
def _wait(report, n: int, what) -> list:
    return [report.get(timeout=120) for _ in range(n)]


def _rate(total: int, warmup: int, span: tuple, size: int, send_cpu_s: float) -> dict:
    """Rates over the receiver's timed span, and CPU seconds per message of every process involved
    (sender side over all messages, receiver over the timed ones): robust to the machine's load."""
    start, end, recv_cpu_s, recv_faults = span
    msgs = (total - warmup) / (end - start)
    send_us, recv_us = send_cpu_s / total * 1e6, recv_cpu_s / (total - warmup) * 1e6
    return {"msgs_per_s": msgs, "gb_per_s": msgs * size / 1e9, "cpu_us_per_msg": send_us + recv_us,
            "send_cpu_us_per_msg": send_us, "recv_cpu_us_per_msg": recv_us,
            "recv_page_faults_per_msg": recv_faults / (total - warmup)}


def _run_raw(ctx, address: str, total: int, warmup: int, large: bool, with_codec: bool) -> dict:
    """Raw PUSH/PULL of the same payload bytes; with_codec also encodes / decodes each message with our
    codec (typed schema, validation) but has no acks, leases, dedup or flow control."""
    import zmq

    from rollspec.transport import encode

    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.bind(address)
    report = ctx.Queue()
    proc = ctx.Process(target=_raw_pull, args=(sock.getsockopt_string(zmq.LAST_ENDPOINT), total, warmup, large,
                                               with_codec, report))
    proc.start()
    _wait(report, 1, "ready")
    payload = _payload(large)
    cpu = time.process_time()
    if with_codec:
        items = [_item(i, large, payload) for i in range(min(total, 4096))]
        for i in range(total):
            sock.send_multipart(encode(items[i % len(items)]), copy=not large)
    else:
        raw = bytes(payload.numpy()) if large else payload
        for _ in range(total):
            sock.send(raw, copy=not large)
    span = report.get(timeout=300)
    send_cpu_s = time.process_time() - cpu
    proc.join()
    sock.close(linger=0)
    return _rate(total, warmup, span, LARGE_BYTES if large else SMALL_BYTES, send_cpu_s)


def _run_ours(ctx, address: str, total: int, warmup: int, large: bool, relayed: bool) -> dict:
    from rollspec.transport import Broker, ProducerConfig, QueueConfig

    broker = Broker([QueueConfig(name="bench", capacity=8192, dedup_window=1 << 20)], bind_address=address)
    report = ctx.Queue()
    procs = [ctx.Process(target=_our_consume, args=(broker.address, "bench", total, warmup, report))]
    if relayed:
        procs.append(ctx.Process(target=_our_produce, args=(broker.address, "bench", total, large, report)))
    for proc in procs:
        proc.start()
    _wait(report, len(procs), "ready")
    freeze_startup_heap()  # this process's first call freezes; the later repetitions' calls do nothing
    cpu = time.process_time()  # this process: the broker's I/O thread, and the producer when direct
    if not relayed:
        sender = broker.sender("bench", ProducerConfig())
        payload = _payload(large)
        _put_all(sender, [_item(i, large, payload) for i in range(min(total, 4096))], total)
    span, send_cpu_s = None, 0.0
    for _ in procs:
        got = report.get(timeout=600)
        if got[0] == "producer_cpu_s":
            send_cpu_s += got[1]
        else:
            span = got
    send_cpu_s += time.process_time() - cpu
    for proc in procs:
        proc.join(60)
    broker.close()
    if span == "timeout":
        raise RuntimeError(f"consumer timed out ({address}, large={large}, relayed={relayed})")
    return _rate(total, warmup, span, LARGE_BYTES if large else SMALL_BYTES, send_cpu_s)


def _run_broadcast(ctx, address: str) -> dict:
    import torch

    from rollspec.transport import BroadcastConfig, WeightPublisher

    publisher = WeightPublisher(bind_address=address, config=BroadcastConfig())
    report = ctx.Queue()
    procs = [ctx.Process(target=_subscribe, args=(publisher.address, 2, report)) for _ in range(NUM_SUBSCRIBERS)]
    for proc in procs:
        proc.start()
    _wait(report, NUM_SUBSCRIBERS, "ready")
    times = {}
    for version in (1, 2):
        weights = {f"layer{i}.weight": torch.randn(1 << 20) + version for i in range(WEIGHT_BYTES >> 22)}
        start = time.monotonic()
        publisher.publish(version, weights)
        snapshot = time.monotonic() - start
        done = [report.get(timeout=300) for _ in range(NUM_SUBSCRIBERS)]
        times[version] = {"total_s": max(t for _, t in done) - start, "snapshot_s": snapshot}
    for proc in procs:
        proc.join(30)
    publisher.close()
    return {"first_version": times[1], "next_version": times[2], "bytes": WEIGHT_BYTES,
            "subscribers": NUM_SUBSCRIBERS}


def _paired(raw: list[dict], ours: list[dict]) -> dict:
    """Per-repetition ratios ours/raw of throughput and raw/ours of CPU per message (higher = better)."""
    out = {}
    for key, ratios in (("throughput", [o["msgs_per_s"] / r["msgs_per_s"] for r, o in zip(raw, ours)]),
                        ("cpu", [r["cpu_us_per_msg"] / o["cpu_us_per_msg"] for r, o in zip(raw, ours)])):
        out[key] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "all": ratios}
    return out


def _machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import zmq

    return {"cpu": model, "cores": os.cpu_count(), "gpu": "none", "python": platform.python_version(),
            "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(), "date": date.today().isoformat(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "note": "machine shared with other jobs while measuring; raw and ours interleaved per repetition"}


def run(reps: int, quick: bool) -> dict:
    ctx = mp.get_context("spawn")
    load_at_start = round(os.getloadavg()[0], 2)
    tmp = tempfile.mkdtemp(prefix="rollspec-bench-")
    small_n, large_n = (40_000, 150) if quick else (200_000, 800)
    results: dict = {}
    paired: dict = {}
    for kind in ("ipc", "tcp"):
        for size_name, large, total in (("1KB", False, small_n), ("4MB", True, large_n)):
            warmup = total // 10
            runs: dict[str, list[dict]] = {"raw": [], "raw_codec": [], "direct": [], "relayed": []}
            for rep in range(reps):
                def address(mode: str) -> str:
                    return f"ipc://{tmp}/{kind}-{size_name}-{rep}-{mode}" if kind == "ipc" else "tcp://127.0.0.1:*"
                runs["raw"].append(_run_raw(ctx, address("raw"), total, warmup, large, with_codec=False))
                runs["raw_codec"].append(_run_raw(ctx, address("codec"), total, warmup, large, with_codec=True))
                runs["direct"].append(_run_ours(ctx, address("direct"), total, warmup, large, relayed=False))
                runs["relayed"].append(_run_ours(ctx, address("relayed"), total, warmup, large, relayed=True))
            results[f"{kind}_{size_name}"] = {
                name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} | {"runs": rs}
                for name, rs in runs.items()
            }
            paired[f"{kind}_{size_name}"] = {mode: _paired(runs["raw"], runs[mode])
                                             for mode in ("raw_codec", "direct", "relayed")}
            print(f"{kind} {size_name}: " + ", ".join(
                f"{name} {v['msgs_per_s']:,.0f} msg/s {v['gb_per_s']:.2f} GB/s"
                for name, v in results[f"{kind}_{size_name}"].items()), flush=True)
    broadcast = _run_broadcast(ctx, f"ipc://{tmp}/weights")
    seconds = broadcast["next_version"]["total_s"]
    print(f"broadcast 100 MB -> {NUM_SUBSCRIBERS} subscribers: {seconds:.2f} s", flush=True)

    def ratio(size: str, mode: str, key: str) -> dict:
        return {kind: results[f"{kind}_{size}"][mode][key] / results[f"{kind}_{size}"]["raw"][key]
                for kind in ("ipc", "tcp")}

    detail = {mode: {"msgs": ratio("1KB", mode, "msgs_per_s"), "bytes": ratio("4MB", mode, "gb_per_s")}
              for mode in ("raw_codec", "direct", "relayed")}
    detail["direct_vs_raw_codec"] = {
        "msgs": {k: results[f"{k}_1KB"]["direct"]["msgs_per_s"] / results[f"{k}_1KB"]["raw_codec"]["msgs_per_s"]
                 for k in ("ipc", "tcp")},
        "bytes": {k: results[f"{k}_4MB"]["direct"]["gb_per_s"] / results[f"{k}_4MB"]["raw_codec"]["gb_per_s"]
                  for k in ("ipc", "tcp")},
    }
    def worst(size: str, mode: str, key: str = "throughput") -> dict:
        """The worse transport's median of per-repetition ratios, with that transport's spread."""
        kind = min(("ipc", "tcp"), key=lambda k: paired[f"{k}_{size}"][mode][key]["median"])
        return paired[f"{kind}_{size}"][mode][key] | {"transport": kind}

    summary = {
        "msgs_ratio_vs_raw": worst("1KB", "direct")["median"],
        "bytes_ratio_vs_raw": worst("4MB", "direct")["median"],
        "msgs_ratio_vs_raw_paired": worst("1KB", "direct"),
        "bytes_ratio_vs_raw_paired": worst("4MB", "direct"),
        "msgs_cpu_ratio_vs_raw": worst("1KB", "direct", "cpu"),
        "bytes_cpu_ratio_vs_raw": worst("4MB", "direct", "cpu"),
        "msgs_ratio_vs_raw_relayed": min(detail["relayed"]["msgs"].values()),
        "bytes_ratio_vs_raw_relayed": min(detail["relayed"]["bytes"].values()),
        "msgs_ratio_vs_raw_with_codec": min(detail["direct_vs_raw_codec"]["msgs"].values()),
        "bytes_ratio_vs_raw_with_codec": min(detail["direct_vs_raw_codec"]["bytes"].values()),
        "broadcast_100MB_4_subscribers_s": broadcast["next_version"]["total_s"],
        "target": 0.8,
        "note": "msgs/bytes_ratio_vs_raw: median over repetitions of ours/raw measured back to back, worse of "
                "ipc and tcp (*_paired: with min/max); *_cpu_ratio: raw CPU-seconds per message (all processes) / "
                "ours, insensitive to the machine's load; the other ratios are ratios of medians; "
                "direct = one hop (queue in the producer process), "
                "relayed = producer -> broker -> consumer processes; *_with_codec = direct vs raw PUSH/PULL "
                "carrying the same typed messages through our codec (the cost of reliability alone)",
    }
    return {"benchmark": "transport", "machine": _machine() | {"load_avg_1m_at_start": load_at_start}, "reps": reps,
            "quick": quick,
            "results": results, "paired_ratios": paired, "ratios": detail, "broadcast": broadcast, "summary": summary}


def markdown_row(out: dict) -> str:
    s, r, m = out["summary"], out["results"], out["machine"]
    return (f"| {m['date']} | {m['cores']}-core {m['cpu']}, no GPU | "
            f"{r['ipc_1KB']['direct']['msgs_per_s']:,.0f} / {r['ipc_1KB']['raw']['msgs_per_s']:,.0f} | "
            f"{r['ipc_4MB']['direct']['gb_per_s']:.2f} / {r['ipc_4MB']['raw']['gb_per_s']:.2f} | "
            f"{s['msgs_ratio_vs_raw']:.2f} | {s['bytes_ratio_vs_raw']:.2f} | "
            f"{s['msgs_ratio_vs_raw_relayed']:.2f} | {s['bytes_ratio_vs_raw_relayed']:.2f} | "
            f"{s['broadcast_100MB_4_subscribers_s']:.2f} s |")


def main() -> None:
    out = run_and_record(__doc__, run, RESULT, reps_help="interleaved repetitions per cell (median reported)")
    print(json.dumps(out["summary"], indent=2))
    print(markdown_row(out))


if __name__ == "__main__":
    main()
