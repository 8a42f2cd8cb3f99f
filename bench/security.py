"""Security benchmark: what CURVE and signed weights cost, and whether the protections hold.

    .venv/bin/python -m bench.security [--quick] [--reps N]

In one run, side by side on tcp://127.0.0.1 (each sender and receiver its own process, plaintext and
CURVE interleaved within each repetition, median of --reps):
- messages/s for ~1 KB messages and GB/s for 4 MiB frames, raw PUSH/PULL (libzmq alone) and our
  work-queue channel ("direct": the controller's prompt path), each with CURVE off and on;
- time for a 100 MB weight version to reach 4 subscriber processes: plaintext unsigned (off),
  plaintext signed, CURVE + signed (on);
- the rogue scenario of tests/integration/security (a process without the run's keys attacking a
  tiny training run), the mutation fuzzer (>= 100,000 cases), kill -9 during checkpoint saves.
Writes bench/results/security.json and prints the BENCHMARKS.md rows.
"""

import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.reps_cli import run_and_record
from bench.transport import _machine, _payload, _put_all, _schemas

RESULT = Path(__file__).parent / "results" / "security.json"
SECURITY_TESTS = Path(__file__).resolve().parents[1] / "tests" / "integration" / "security"
SMALL_BYTES, LARGE_BYTES, WEIGHT_BYTES, NUM_SUBSCRIBERS = 1000, 4 << 20, 100 << 20, 4


def _curve(sock, keys, server: bool) -> None:
    """CURVE options on a raw socket (what PeerGuard sets, minus the ZAP handler and monitor)."""
    import zmq

    if server:
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.server.secret)
    else:
        sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.client.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.client.secret)


def _raw_pull(address: str, total: int, warmup: int, large: bool, keys, report) -> None:
    import zmq

    sock = zmq.Context.instance().socket(zmq.PULL)
    if keys is not None:
        _curve(sock, keys, server=False)
    sock.connect(address)
    report.put("ready")
    start = None
    for n in range(total):
        sock.recv(copy=not large)
        if n + 1 == warmup:
            start = time.monotonic()
    report.put((start, time.monotonic()))
    sock.close(linger=0)


def _our_consume(address: str, total: int, warmup: int, security, report) -> None:
    from rollspec.transport import ConsumerConfig, ZmqConsumer

    _schemas()
    consumer = ZmqConsumer(address, "bench", config=ConsumerConfig(window_items=2048, window_bytes=128 << 20),
                           security=security)
    report.put("ready")
    count, start = 0, None
    while count < total:
        batch = consumer.get_batch(1024, timeout_s=120.0)
        if not batch:
            break
        consumer.ack_many(batch)
        count += len(batch)
        if start is None and count >= warmup:
            start = time.monotonic()
    report.put((start, time.monotonic()) if count >= total else "timeout")
    consumer.close()


def _run_raw(ctx, total: int, warmup: int, large: bool, keys) -> float:
    import zmq

    sock = zmq.Context.instance().socket(zmq.PUSH)
    if keys is not None:
        _curve(sock, keys.for_role("controller"), server=True)
    sock.bind("tcp://127.0.0.1:*")
    report = ctx.Queue()
    client = keys.for_role("rollout") if keys is not None else None
    proc = ctx.Process(target=_raw_pull, args=(sock.getsockopt_string(zmq.LAST_ENDPOINT), total, warmup, large,
                                               client, report))
    proc.start()
    report.get(timeout=120)
    payload = bytes(_payload(large).numpy()) if large else _payload(large)
    for _ in range(total):
        sock.send(payload, copy=not large)
    start, end = report.get(timeout=600)
    proc.join()
    sock.close(linger=0)
    return (total - warmup) / (end - start)


def _run_ours(ctx, total: int, warmup: int, large: bool, keys) -> float:
    from rollspec.transport import Broker, ProducerConfig, QueueConfig, SecurityConfig

    on = (lambda role: SecurityConfig(curve="on", keys=keys.for_role(role))) if keys else (lambda role: SecurityConfig())
    broker = Broker([QueueConfig(name="bench", capacity=8192, dedup_window=1 << 20)], security=on("controller"))
    report = ctx.Queue()
    proc = ctx.Process(target=_our_consume, args=(broker.address, total, warmup, on("rollout"), report))
    proc.start()
    report.get(timeout=120)
    item_cls, tensor_cls = _schemas()
    payload = _payload(large)
    items = [tensor_cls(seq=i, data=payload) if large else item_cls(seq=i, payload=payload)
             for i in range(min(total, 4096))]
    _put_all(broker.sender("bench", ProducerConfig()), items, total)
    span = report.get(timeout=900)
    proc.join(60)
    broker.close()
    if span == "timeout":
        raise RuntimeError(f"consumer timed out (large={large}, curve={keys is not None})")
    return (total - warmup) / (span[1] - span[0])


def throughput(reps: int, quick: bool) -> dict:
    """msgs/s (1 KB) and GB/s (4 MiB), raw and ours, CURVE off and on, interleaved; medians."""
    from rollspec.transport import RunKeys

    ctx = mp.get_context("spawn")
    counts = {"1KB": (30_000, 15_000) if quick else (150_000, 80_000), "4MB": (80, 60) if quick else (300, 200)}
    out: dict = {}
    for size, large in (("1KB", False), ("4MB", True)):
        raw_n, ours_n = counts[size]  # messages: raw PUSH/PULL, our channel
        runs: dict[str, list[float]] = {f"{kind}_{mode}": [] for kind in ("raw", "ours") for mode in ("plain", "curve")}
        for _ in range(reps):
            for mode in ("plain", "curve"):
                keys = RunKeys.create() if mode == "curve" else None
                runs[f"raw_{mode}"].append(_run_raw(ctx, raw_n, raw_n // 10, large, keys))
                runs[f"ours_{mode}"].append(_run_ours(ctx, ours_n, ours_n // 10, large, keys))
        scale = LARGE_BYTES / 1e9 if large else 1.0
        out[size] = {name: statistics.median(values) * scale for name, values in runs.items()}
        out[size]["unit"] = "GB/s" if large else "msgs/s"
        print(f"{size}: " + ", ".join(f"{k} {v:,.2f}" for k, v in out[size].items() if k != "unit"), flush=True)
    return out


def _subscribe(address: str, security, versions: int, report) -> None:
    from rollspec.transport import WeightSubscriber

    subscriber = WeightSubscriber(address, security=security)
    report.put("ready")
    for version in range(1, versions + 1):
        subscriber.wait_for(version, timeout_s=600.0)
        report.put((version, time.monotonic()))
    subscriber.close()


def broadcast(mode: str) -> dict:
    """Seconds for a 100 MB version to be applied by 4 subscriber processes (publish() call to last apply)."""
    import torch

    from rollspec.transport import RunKeys, SecurityConfig, WeightPublisher

    ctx, keys = mp.get_context("spawn"), RunKeys.create()
    curve = "on" if mode == "on" else "off"
    publisher_security = SecurityConfig() if mode == "off" else SecurityConfig(curve=curve, keys=keys.for_role("learner"))
    sub_security = SecurityConfig() if mode == "off" else SecurityConfig(curve=curve, keys=keys.for_role("rollout"))
    publisher = WeightPublisher(security=publisher_security)
    report = ctx.Queue()
    procs = [ctx.Process(target=_subscribe, args=(publisher.address, sub_security, 3, report))
             for _ in range(NUM_SUBSCRIBERS)]
    for proc in procs:
        proc.start()
    for _ in procs:
        report.get(timeout=120)
    times = []
    for version in (1, 2, 3):
        weights = {f"layer{i}.weight": torch.randn(1 << 20) + version for i in range(WEIGHT_BYTES >> 22)}
        start = time.monotonic()
        publisher.publish(version, weights)
        snapshot = time.monotonic() - start
        done = [report.get(timeout=600) for _ in procs]
        times.append({"total_s": max(t for _, t in done) - start, "snapshot_s": snapshot})
    for proc in procs:
        proc.join(60)
    publisher.close()
    later = times[1:]  # version 1 includes connection set-up
    return {"total_s": statistics.median(t["total_s"] for t in later),
            "snapshot_s": statistics.median(t["snapshot_s"] for t in later), "first_version_s": times[0]["total_s"]}


def rogue() -> dict:
    """The rogue scenario: counts of a calm and an attacked tiny run, and what got through."""
    sys.path.insert(0, str(SECURITY_TESTS))
    import security_workers as sw

    from rollspec.transport import RunKeys

    calm, attacked = sw.tiny_run(RunKeys.create(), with_rogue=False), sw.tiny_run(RunKeys.create(), with_rogue=True)
    got = attacked["rogue"]
    counts = attacked["counts"]
    accepted = (got["prompts_taken"] + len(got["weights_seen"]) + got["puts_confirmed"]
                + counts["trained"] - counts["consistent"] + int(attacked["probe_latest"] is not None))
    return {"rogue_accepted": accepted, "same_counts_as_calm_run": attacked["counts"] == calm["counts"],
            "trained": counts["trained"], "rogue_attempts": {k: got[k] for k in ("raw_connections", "flood_sent")},
            "refused": attacked["refused"]}


def fuzz(cases: int) -> dict:
    import logging

    from rollspec.transport.fuzz import run_fuzz

    logging.disable(logging.ERROR)
    reports = [run_fuzz(cases // 2, seed=seed, trace_every=100) for seed in (11, 12)]
    logging.disable(logging.NOTSET)
    return {"cases": sum(r.cases for r in reports), "crashes": sum(len(r.crashes) for r in reports),
            "crash_samples": [c for r in reports for c in r.crashes][:5],
            "max_traced_alloc_bytes": max(r.max_traced_alloc_bytes for r in reports),
            "max_input_bytes": max(r.max_input_bytes for r in reports), "seconds": sum(r.seconds for r in reports)}


def checkpoint_kills(seeds: int, kills: int) -> dict:
    sys.path.insert(0, str(SECURITY_TESTS))
    import checkpoint_kills as ck

    totals = {"kills": 0, "mid_save": 0, "loads": 0, "partial_loads": 0}
    for seed in range(seeds):
        with tempfile.TemporaryDirectory(prefix="rollspec-ckpt-") as root:
            result = ck.kill_trials(Path(root), seed=100 + seed, kills=kills)
        for key in totals:
            totals[key] += result[key]
    return totals | {"seeds": seeds}


def run(reps: int, quick: bool) -> dict:
    load_at_start = round(os.getloadavg()[0], 2)
    rates = throughput(reps, quick)
    weights = {mode: broadcast(mode) for mode in ("off", "signed", "on")}
    print("broadcast 100 MB -> 4: " + ", ".join(f"{m} {w['total_s']:.2f} s" for m, w in weights.items()), flush=True)
    attack = rogue()
    print(f"rogue: accepted {attack['rogue_accepted']}, same counts {attack['same_counts_as_calm_run']}", flush=True)
    fuzzing = fuzz(20_000 if quick else 120_000)
    print(f"fuzz: {fuzzing['cases']} cases, {fuzzing['crashes']} crashes", flush=True)
    kills = checkpoint_kills(2 if quick else 5, 5 if quick else 20)
    print(f"checkpoints: {kills}", flush=True)
    summary = {
        "rogue_accepted": attack["rogue_accepted"], "fuzz_cases": fuzzing["cases"], "fuzz_crashes": fuzzing["crashes"],
        "curve_msgs_ratio": rates["1KB"]["ours_curve"] / rates["1KB"]["ours_plain"],
        "curve_bytes_ratio": rates["4MB"]["ours_curve"] / rates["4MB"]["ours_plain"],
        "curve_msgs_ratio_raw_zmq": rates["1KB"]["raw_curve"] / rates["1KB"]["raw_plain"],
        "curve_bytes_ratio_raw_zmq": rates["4MB"]["raw_curve"] / rates["4MB"]["raw_plain"],
        "broadcast_100MB_4_subscribers_s": {mode: w["total_s"] for mode, w in weights.items()},
        "broadcast_auth_ratio": weights["off"]["total_s"] / weights["on"]["total_s"],
        "partial_checkpoint_loads": kills["partial_loads"],
        "target_curve_bytes_ratio": 0.5,
        "note": "curve_*_ratio = our work-queue channel (direct) with CURVE / without, tcp loopback; *_raw_zmq = "
                "the same for raw PUSH/PULL; broadcast_auth_ratio = time off / time on (CURVE + signed)",
    }
    return {"benchmark": "security", "machine": _machine() | {"load_avg_1m_at_start": load_at_start}, "reps": reps,
            "quick": quick, "throughput": rates, "broadcast": weights, "rogue": attack, "fuzz": fuzzing,
            "checkpoints": kills, "summary": summary}


def markdown_row(out: dict) -> str:
    s, t, m = out["summary"], out["throughput"], out["machine"]
    b = s["broadcast_100MB_4_subscribers_s"]
    return (f"| {m['date']} | {m['cores']}-core {m['cpu']}, no GPU | "
            f"{t['1KB']['ours_curve']:,.0f} / {t['1KB']['ours_plain']:,.0f} ({s['curve_msgs_ratio']:.2f}) | "
            f"{t['4MB']['ours_curve']:.2f} / {t['4MB']['ours_plain']:.2f} ({s['curve_bytes_ratio']:.2f}) | "
            f"{s['curve_msgs_ratio_raw_zmq']:.2f} / {s['curve_bytes_ratio_raw_zmq']:.2f} | "
            f"{b['on']:.2f} / {b['signed']:.2f} / {b['off']:.2f} s | {s['rogue_accepted']} | "
            f"{s['fuzz_cases']:,} / {s['fuzz_crashes']} | {s['partial_checkpoint_loads']} |")


def main() -> None:
    out = run_and_record(__doc__, run, RESULT, reps_help="interleaved repetitions per cell (median reported)")
    print(json.dumps(out["summary"], indent=2))
    print(markdown_row(out))


if __name__ == "__main__":
    main()
