"""Per-thread CPU of one message on the direct path (broker + local sender here, consumer in a child
process) or raw PUSH/PULL, paced or at full rate: where our fixed per-message cost sits.

    .venv/bin/python -m bench.transport_threads [--raw] [--size BYTES] [--rate MSG_PER_S] [--seconds S] [--batch N]
                                                [--packed]

Items are one tensor of --size bytes (the 4 MiB path, or 64 B: a message whose bytes cost nothing),
put one segment per item, --batch items per put_many. With --packed, items are bench.transport's
tensor-free 1 KB items instead (`--packed --size 1000 --rate 0 --batch 64 --count 200000`: the 1 KB
path, --batch items per segment). --rate 0 = as fast as the queue takes them.
CPU per message is every thread's scheduler run time (/proc/<pid>/task/*/schedstat, exact) over the
timed span, by thread: app (the application thread), broker_io / our_io (our I/O threads),
ZMQbg/IO/0 (libzmq's), python (pyzmq's zero-copy GC thread); also scheduler slices (wake-ups) and
minor page faults per message, and (ours, --batch 1) the latency from put() to get_batch() returning
the item. Prints a report; writes nothing. Compare trees by running it with
each on PYTHONPATH, interleaved, and say the machine's load: paced code runs cache-cold, so single
runs move by +-15%.
"""

import argparse
import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

from bench.transport import _schemas

Sample = dict[int, tuple[str, int, int, int]]  # tid -> (comm, run ns, slices, minor faults)


def _threads() -> Sample:
    out: Sample = {}
    for tid in os.listdir("/proc/self/task"):
        base = Path(f"/proc/self/task/{tid}")
        try:
            run_ns, _, slices = (int(x) for x in (base / "schedstat").read_text().split()[:3])
            stat = (base / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(tid)] = ((base / "comm").read_text().strip(), run_ns, slices, int(stat[7]))
        except OSError:
            continue
    return out


def _diff(before: Sample, after: Sample, names: dict[int, str]) -> dict[str, list[int]]:
    """Run ns, slices and faults per thread label (threads of one label summed)."""
    out: dict[str, list[int]] = {}
    for tid, (comm, run_ns, slices, faults) in after.items():
        _, run0, slices0, faults0 = before.get(tid, (comm, 0, 0, 0))
        acc = out.setdefault(names.get(tid, comm), [0, 0, 0])
        acc[0] += run_ns - run0
        acc[1] += slices - slices0
        acc[2] += faults - faults0
    return out


def _consume(address: str, total: int, raw: bool, report) -> None:
    _schemas()
    names = {threading.get_native_id(): "app"}
    if raw:
        import zmq

        sock = zmq.Context.instance().socket(zmq.PULL)
        sock.connect(address)
        report.put("ready")
        sock.recv(copy=False)
        before = _threads()
        for _ in range(total - 1):
            sock.recv(copy=False)
        report.put((_diff(before, _threads(), names), total - 1, []))
        sock.close(linger=0)
        return
    from rollspec.transport import ConsumerConfig, ZmqConsumer

    consumer = ZmqConsumer(address, "bench", config=ConsumerConfig(window_items=2048, window_bytes=128 << 20))
    names[consumer._loop._thread.native_id] = "our_io"
    report.put("ready")
    count, first, before, arrived = 0, 0, None, []
    while count < total:
        batch = consumer.get_batch(1024, timeout_s=60.0)
        now = time.monotonic()  # CLOCK_MONOTONIC is one clock for all processes of the machine
        arrived += [(delivery.item.seq, now) for delivery in batch]
        consumer.ack_many(batch)
        count += len(batch)
        if before is None:
            before, first = _threads(), count
        del batch
    report.put((_diff(before, _threads(), names), total - first, arrived))
    consumer.close()


def _pace(rate: float, count: int, next_at: float) -> float:
    if rate <= 0:
        return next_at
    next_at += count / rate
    time.sleep(max(0.0, next_at - time.monotonic()))
    return next_at


def run(args: argparse.Namespace) -> dict:
    import torch
    import zmq

    ctx = mp.get_context("spawn")
    total = int(args.rate * args.seconds) if args.rate > 0 else args.count
    report = ctx.Queue()
    item_cls, tensor_cls = _schemas()
    payload = torch.full((args.size,), 7, dtype=torch.uint8)
    names = {threading.get_native_id(): "app"}
    if args.raw:
        sock = zmq.Context.instance().socket(zmq.PUSH)
        sock.bind("tcp://127.0.0.1:*")
        proc = ctx.Process(target=_consume, args=(sock.getsockopt_string(zmq.LAST_ENDPOINT), total, True, report))
        proc.start()
        report.get(timeout=120)
        data = bytes(payload.numpy())
        sock.send(data, copy=False)
        time.sleep(0.05)
        before = _threads()
        start = next_at = time.monotonic()
        for _ in range(total - 1):
            sock.send(data, copy=False)
            next_at = _pace(args.rate, 1, next_at)
        recv, n_recv, _ = report.get(timeout=600)
        sock.close(linger=0)
        latencies: list[float] = []
    else:
        from rollspec.transport import Broker, ProducerConfig, QueueConfig

        broker = Broker([QueueConfig(name="bench", capacity=8192, dedup_window=1 << 20)])
        names[broker._loop._thread.native_id] = "broker_io"
        proc = ctx.Process(target=_consume, args=(broker.address, total, False, report))
        proc.start()
        report.get(timeout=120)
        if args.packed:
            data = os.urandom(args.size)
            items = [item_cls(seq=i, payload=data) for i in range(total)]
        else:
            items = [tensor_cls(seq=i, data=payload) for i in range(total)]
        sender = broker.sender("bench", ProducerConfig(batch_items=args.batch if args.packed else 1))
        sender.put(items[0])
        time.sleep(0.05)
        before = _threads()
        start = next_at = time.monotonic()
        put_at = [0.0] * total
        for i in range(1, total, args.batch):
            put_at[i] = time.monotonic()
            sender.put_many(items[i:i + args.batch], timeout_s=120.0)
            next_at = _pace(args.rate, len(items[i:i + args.batch]), next_at)
        recv, n_recv, arrived = report.get(timeout=600)
        latencies = sorted(at - put_at[seq] for seq, at in arrived if seq > 0 and put_at[seq])
    after, wall = _threads(), time.monotonic() - start
    proc.join(60)
    if not args.raw:
        broker.close()
    send = _diff(before, after, names)
    sides = {"send": (send, total - 1), "recv": (recv, n_recv)}
    return {side: {label: {"cpu_us": run_ns / 1e3 / n, "slices": slices / n, "page_faults": faults / n}
                   for label, (run_ns, slices, faults) in threads.items() if run_ns / 1e3 / n >= 0.05}
            for side, (threads, n) in sides.items()} | {
        "msgs_per_s": (total - 1) / wall, "load_avg_1m": os.getloadavg()[0],
        "latency_us": {q: latencies[int(q / 100 * (len(latencies) - 1))] * 1e6 for q in (50, 90, 99)} if latencies else {}}


def _us(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", action="store_true", help="raw PUSH/PULL instead of our channel")
    parser.add_argument("--size", type=int, default=64, help="tensor bytes per message")
    parser.add_argument("--rate", type=float, default=400.0, help="messages per second; 0 = unpaced")
    parser.add_argument("--seconds", type=float, default=5.0, help="paced duration")
    parser.add_argument("--count", type=int, default=800, help="messages when unpaced")
    parser.add_argument("--batch", type=int, default=1, help="items per put_many")
    parser.add_argument("--packed", action="store_true", help="tensor-free items of --size payload bytes (packed segments)")
    args = parser.parse_args()
    out = run(args)
    print(f"{'raw' if args.raw else 'ours'}{' packed' if args.packed else ''} size {args.size} rate {args.rate or 'unpaced'}: "
          f"{out['msgs_per_s']:.0f} msg/s, load {out['load_avg_1m']:.2f}")
    total = 0.0
    for side in ("send", "recv"):
        threads = sorted(out[side].items(), key=lambda kv: -kv[1]["cpu_us"])
        subtotal = sum(t["cpu_us"] for _, t in threads)
        total += subtotal
        print(f"  {side}: {_us(subtotal)} us/msg  " + ", ".join(
            f"{label} {_us(t['cpu_us'])} us / {t['slices']:.1f} sl / {t['page_faults']:.0f} pf" for label, t in threads))
    print(f"  total {_us(total)} us/msg")
    if out["latency_us"]:  # put (first item of the put_many) to get_batch's return, for batch 1
        print("  put -> get latency us: " + ", ".join(f"p{q} {v:.0f}" for q, v in out["latency_us"].items()))


if __name__ == "__main__":
    main()
