"""Where the CPU of a 4 MiB message goes: raw pyzmq vs our channel, plaintext vs CURVE (issues 4 and 14).

    .venv/bin/python -m bench.large_frames [--reps N] [--quick]

Side by side in one run, interleaved per repetition, tcp://127.0.0.1, sender and receiver in separate
processes. CPU = the whole process's thread CPU (/proc/self/task/*/schedstat, exact, all threads:
application, our I/O thread, libzmq's I/O thread) per message, so it holds up under the machine's load
better than throughput does.
- raw PUSH/PULL, receiver dropping each frame vs keeping the last 32 alive (do cold receive buffers cost?);
- our channel (direct) with 4 MiB tensors, and with 64-byte tensors in one-item segments paced to about the
  4 MiB message rate (what a message costs us when the bytes cost nothing);
- our channel's 4 MiB tensors, CURVE off / on, tensor_frame_bytes 1 GiB (one frame) / 1 MiB (four frames,
  joined on receipt);
- XSalsa20-Poly1305 (libzmq's CURVE cipher, from the libsodium pyzmq ships) and memmove on one core.
Writes bench/results/large_frames.json.
"""

import collections
import ctypes
import glob
import json
import multiprocessing as mp
import os
import statistics
import time
from pathlib import Path

from bench.reps_cli import run_and_record
from bench.transport import _machine, _schemas

RESULT = Path(__file__).parent / "results" / "large_frames.json"
LARGE = 4 << 20
TINY = 64


def _cpu_s() -> float:
    """CPU seconds of every thread of this process so far (exact scheduler run time)."""
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            total += int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0])
        except OSError:
            pass
    return total / 1e9


# --- raw PUSH/PULL, receiver holding `hold` frames -----------------------------------------------------
def _raw_pull(address: str, total: int, warmup: int, hold: int, report) -> None:
    import zmq

    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.connect(address)
    report.put("ready")
    alive: collections.deque = collections.deque(maxlen=hold)
    for n in range(total):
        alive.append(sock.recv(copy=False))
        if n + 1 == warmup:
            start, cpu = time.monotonic(), _cpu_s()
    report.put((time.monotonic() - start, (_cpu_s() - cpu) / (total - warmup)))
    alive.clear()
    sock.close(linger=0)


def _raw(ctx, total: int, hold: int) -> dict:
    import zmq

    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.bind("tcp://127.0.0.1:*")
    report = ctx.Queue()
    proc = ctx.Process(target=_raw_pull, args=(sock.getsockopt_string(zmq.LAST_ENDPOINT), total, total // 10, hold,
                                               report))
    proc.start()
    report.get(timeout=120)
    payload, cpu = bytes(LARGE), _cpu_s()
    for _ in range(total):
        sock.send(payload, copy=False)
    wall, recv_cpu = report.get(timeout=300)
    send_cpu = (_cpu_s() - cpu) / total
    proc.join()
    sock.close(linger=0)
    return _cell(total - total // 10, LARGE, wall, send_cpu, recv_cpu)


def _cell(counted: int, size: int, wall: float, send_cpu: float, recv_cpu: float) -> dict:
    return {"gb_per_s": counted * size / wall / 1e9, "msgs_per_s": counted / wall, "send_cpu_us": send_cpu * 1e6,
            "recv_cpu_us": recv_cpu * 1e6, "cpu_us": (send_cpu + recv_cpu) * 1e6,
            "core_s_per_gb": (send_cpu + recv_cpu) / (size / 1e9)}


# --- our channel (direct: the queue in the sending process) -------------------------------------------------
class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def _heap_in_use(libc) -> int:
    """Bytes glibc malloc has handed out and not got back (where libzmq's receive buffers live)."""
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def _consume(address: str, total: int, warmup: int, security, report) -> None:
    import threading

    from rollspec.transport import ConsumerConfig, ZmqConsumer

    _schemas()
    consumer = ZmqConsumer(address, "bench", config=ConsumerConfig(window_items=2048, window_bytes=128 << 20),
                           security=security)
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    base, samples, done = _heap_in_use(libc), [], threading.Event()

    def sample() -> None:  # how many receive buffers are alive at a time (the window allows 32)
        while not done.wait(0.005):
            samples.append(_heap_in_use(libc) - base)

    sampler = threading.Thread(target=sample, daemon=True)
    report.put("ready")
    count, counted = 0, None
    while count < total:
        batch = consumer.get_batch(1024, timeout_s=120.0)
        consumer.ack_many(batch)
        count += len(batch)
        if counted is None and count >= warmup:
            start, cpu, counted = time.monotonic(), _cpu_s(), count
            sampler.start()
        del batch  # drop the tensors now, as an application done with them would
    done.set()
    report.put((time.monotonic() - start, (_cpu_s() - cpu) / (total - counted), total - counted,
                statistics.median(samples or [0]) / LARGE))
    consumer.close()


def _ours(ctx, total: int, size: int, *, keys=None, frame_bytes: int = 1 << 30, pace_s: float = 0.0) -> dict:
    import torch

    from rollspec.transport import Broker, ProducerConfig, QueueConfig, SecurityConfig

    def security(role: str) -> SecurityConfig:
        return SecurityConfig(curve="on", keys=keys.for_role(role)) if keys is not None else SecurityConfig()

    broker = Broker([QueueConfig(name="bench", capacity=8192, dedup_window=1 << 20)], security=security("controller"))
    report = ctx.Queue()
    proc = ctx.Process(target=_consume, args=(broker.address, total, total // 10, security("rollout"), report))
    proc.start()
    report.get(timeout=120)
    _, tensor_cls = _schemas()
    payload = torch.full((size,), 7, dtype=torch.uint8)
    items = [tensor_cls(seq=i, data=payload) for i in range(total)]
    sender = broker.sender("bench", ProducerConfig(tensor_frame_bytes=frame_bytes, batch_items=1 if pace_s else 256))
    cpu, next_at = _cpu_s(), time.monotonic()
    if pace_s:  # one item at a time: every message pays its own wake-ups, as 4 MiB messages do
        for item in items:
            sender.put(item)
            next_at += pace_s
            time.sleep(max(0.0, next_at - time.monotonic()))
    else:
        for start in range(0, total, 64):
            sender.put_many(items[start:start + 64], timeout_s=120.0)
    wall, recv_cpu, counted, held = report.get(timeout=900)
    send_cpu = (_cpu_s() - cpu) / total
    proc.join(60)
    broker.close()
    return _cell(counted, size, wall, send_cpu, recv_cpu) | {"recv_heap_in_use_4MiB_units": held}


# --- the cipher alone ------------------------------------------------------------------------------------
def cipher_speed() -> dict:
    """XSalsa20-Poly1305 (crypto_box_easy_afternm, what libzmq's CURVE calls per frame) and memmove, one thread,
    warm buffers, in GB/s; from the libsodium shipped with pyzmq."""
    import zmq

    libs = glob.glob(str(Path(zmq.__file__).parents[1] / "pyzmq.libs" / "libsodium*.so*"))
    if not libs:
        return {"note": "no libsodium found next to pyzmq"}
    sodium = ctypes.CDLL(libs[0])
    sodium.sodium_version_string.restype = ctypes.c_char_p
    if sodium.sodium_init() < 0:
        return {"note": "sodium_init failed"}
    out: dict = {"libsodium": sodium.sodium_version_string().decode()}
    key, nonce = ctypes.create_string_buffer(32), ctypes.create_string_buffer(24)
    for size in (LARGE, 1 << 20):
        plain, boxed = ctypes.create_string_buffer(os.urandom(size), size), ctypes.create_string_buffer(size + 16)
        for name, call in (("xsalsa20_poly1305", lambda: sodium.crypto_box_easy_afternm(
                                boxed, plain, ctypes.c_ulonglong(size), nonce, key)),
                           ("memmove", lambda: ctypes.memmove(boxed, plain, size))):
            call()
            reps, cpu = max(20, (256 << 20) // size), time.thread_time()
            for _ in range(reps):
                call()
            out[f"{name}_{size >> 20}MiB_gb_per_s"] = reps * size / (time.thread_time() - cpu) / 1e9
    return out


# --- the run -------------------------------------------------------------------------------------------------
def run(reps: int, quick: bool) -> dict:
    from rollspec.transport import RunKeys

    ctx = mp.get_context("spawn")
    load_at_start = round(os.getloadavg()[0], 2)
    n_large, n_curve, n_tiny = (150, 80, 600) if quick else (400, 200, 1500)
    cells: dict[str, list[dict]] = collections.defaultdict(list)
    for rep in range(reps):
        cells["raw_hold_1"].append(_raw(ctx, n_large, hold=1))
        cells["raw_hold_32"].append(_raw(ctx, n_large, hold=32))
        ours_4mb = _ours(ctx, n_large, LARGE)
        cells["ours_4MiB"].append(ours_4mb)
        cells["ours_64B_paced"].append(_ours(ctx, n_tiny, TINY, pace_s=1.0 / max(50.0, ours_4mb["msgs_per_s"])))
        for curve in (False, True):
            for frames, frame_bytes in (("1frame", 1 << 30), ("1MiB_frames", 1 << 20)):
                keys = RunKeys.create() if curve else None
                cells[f"ours_{'curve' if curve else 'plain'}_{frames}"].append(
                    _ours(ctx, n_curve, LARGE, keys=keys, frame_bytes=frame_bytes))
        print(f"rep {rep}: " + ", ".join(f"{k} {v[-1]['gb_per_s']:.2f} GB/s {v[-1]['cpu_us']:.0f} us"
                                         for k, v in cells.items()), flush=True)
    medians = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} | {"runs": runs}
               for name, runs in cells.items()}

    def paired(a: str, b: str, key: str = "gb_per_s") -> float:
        """Median over repetitions of cells[a] / cells[b] (same repetition)."""
        return statistics.median(x[key] / y[key] for x, y in zip(cells[a], cells[b]))

    summary = {
        "raw_hold_32_vs_1_throughput": paired("raw_hold_32", "raw_hold_1"),
        "raw_hold_32_vs_1_recv_cpu": paired("raw_hold_32", "raw_hold_1", "recv_cpu_us"),
        "ours_vs_raw_throughput": paired("ours_4MiB", "raw_hold_1"),
        "ours_vs_raw_cpu": paired("raw_hold_1", "ours_4MiB", "cpu_us"),
        "extra_cpu_us_per_4MiB_msg": medians["ours_4MiB"]["cpu_us"] - medians["raw_hold_1"]["cpu_us"],
        "ours_64B_paced_cpu_us_per_msg": medians["ours_64B_paced"]["cpu_us"],
        "curve_ratio_1frame": paired("ours_curve_1frame", "ours_plain_1frame"),
        "curve_ratio_1MiB_frames": paired("ours_curve_1MiB_frames", "ours_plain_1MiB_frames"),
        "curve_1MiB_vs_1frame": paired("ours_curve_1MiB_frames", "ours_curve_1frame"),
        "plain_1MiB_vs_1frame": paired("ours_plain_1MiB_frames", "ours_plain_1frame"),
        "ours_recv_heap_in_use_4MiB_units": medians["ours_4MiB"]["recv_heap_in_use_4MiB_units"],
        "core_s_per_gb": {name: m["core_s_per_gb"] for name, m in medians.items() if name != "ours_64B_paced"},
        "note": "ratios are medians of per-repetition ratios; *_cpu ratios: raw CPU / ours (higher = better) except "
                "raw_hold_32_vs_1_recv_cpu (hold 32 / hold 1); core_s_per_gb = sender + receiver process CPU per GB",
    }
    return {"benchmark": "large_frames", "machine": _machine() | {"load_avg_1m_at_start": load_at_start},
            "reps": reps, "quick": quick, "cells": medians, "cipher": cipher_speed(), "summary": summary}


def main() -> None:
    out = run_and_record(__doc__, run, RESULT, reps_help="interleaved repetitions (medians reported)")
    print(json.dumps(out["summary"] | {"cipher": out["cipher"]}, indent=2))


if __name__ == "__main__":
    main()
