"""Weight broadcast over real sockets: subscribers in separate processes converge to the newest
version under drops, late joiners catch up, corrupted chunks are caught and never applied, and a
replaced version's snapshot is freed."""

import gc
import sys
import time
import weakref
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import transport_workers as tw  # noqa: E402

from rollspec.transport.config import BroadcastConfig  # noqa: E402
from rollspec.transport.faults import FaultPlan  # noqa: E402
from rollspec.transport.weight_publisher import WeightPublisher  # noqa: E402
from rollspec.transport.weight_subscriber import WeightSubscriber  # noqa: E402

CONFIG = BroadcastConfig(chunk_bytes=64 << 10, window_chunks=4, request_timeout_s=0.3, poll_s=0.2)


def _weights(version: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(version)
    return {"embed": torch.randn(512, 256, generator=gen), "norm": torch.randn(256, generator=gen).bfloat16(),
            "step": torch.tensor([version], dtype=torch.int64)}


def test_subscribers_converge_to_the_newest_version_under_drops_and_corruption():
    lossy = FaultPlan(seed=5, drop=0.10, duplicate=0.05, reorder=0.05, delay=0.05, corrupt=0.05)
    publisher = WeightPublisher(config=CONFIG, faults=lossy.derive(0))
    report, stop, procs = tw.CTX.Queue(), tw.CTX.Event(), []
    try:
        for k in range(3):
            procs.append(tw.start(tw.subscribe, publisher.address, CONFIG, lossy.derive(k + 1), report, stop, 3))
        publisher.publish(1, _weights(1))
        tw.drain(report, lambda m: sum(x[0] == "applied" for x in m) >= 1, timeout_s=60)
        publisher.publish(2, _weights(2))  # while the others are still fetching version 1
        publisher.publish(3, _weights(3))
        messages = tw.drain(report, lambda m: sum(x[:2] == ("applied", 3) for x in m) == 3, timeout_s=90)
        late = WeightSubscriber(publisher.address, config=CONFIG, faults=lossy.derive(9))
        version, weights = late.wait_for(3, timeout_s=60)
        late_stats = late.stats()
        late.close()
        stop.set()
        messages += tw.drain(report, lambda m: sum(x[0] == "stats" for x in m) == 3, timeout_s=30)
    finally:
        tw.stop_all(procs)
        publisher.close()
    expected = {v: tw.digest(_weights(v)) for v in (1, 2, 3)}
    applied = [m for m in messages if m[0] == "applied"]
    assert sum(m[1] == 3 for m in applied) == 3
    for m in applied:
        assert m[3] == expected[m[1]], "an applied version differs from what was published"
    for pid in {m[2] for m in applied}:
        versions = [m[1] for m in applied if m[2] == pid]
        assert versions == sorted(set(versions)), "versions went backwards"
    assert version == 3 and tw.digest(weights) == expected[3] and late_stats.versions_applied == 1
    stats = [m[1] for m in messages if m[0] == "stats"]
    damaged = sum(s["corrupt_chunks"] + s["rejected"].get("checksum", 0) for s in stats)
    faults = publisher.stats().faults
    assert faults["dropped"] > 0 and faults["corrupted"] > 0
    assert damaged > 0, f"{faults['corrupted']} messages corrupted, none detected: {stats}"


def test_corrupted_chunks_are_never_applied():
    publisher = WeightPublisher(config=CONFIG, faults=FaultPlan(seed=3, corrupt=0.3))
    subscriber = WeightSubscriber(publisher.address, config=CONFIG)
    try:
        publisher.publish(7, _weights(7))
        version, weights = subscriber.wait_for(7, timeout_s=60)
        stats = subscriber.stats()
    finally:
        subscriber.close()
        publisher.close()
    assert version == 7 and tw.digest(weights) == tw.digest(_weights(7))
    assert stats.corrupt_chunks + stats.rejected.get("checksum", 0) > 0


def test_a_replaced_version_is_freed_on_both_sides():
    publisher = WeightPublisher(config=CONFIG)
    subscriber = WeightSubscriber(publisher.address, config=CONFIG)
    try:
        publisher.publish(1, _weights(1))
        first = weakref.ref(publisher._core.served.flat)
        received = weakref.ref(subscriber.wait_for(1, timeout_s=30)[1]["embed"])
        publisher.publish(2, _weights(2))
        assert subscriber.wait_for(2, timeout_s=30)[0] == 2
        deadline = time.monotonic() + 5
        while (first() is not None or received() is not None) and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.05)
        assert first() is None, "publisher kept the old snapshot"
        assert received() is None, "subscriber kept the old version"
    finally:
        subscriber.close()
        publisher.close()
