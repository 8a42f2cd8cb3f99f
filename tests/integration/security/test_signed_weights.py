"""Weight versions are authenticated end to end: a subscriber holding the run's keys applies only
versions MACed by the run's key, for this run, whose every chunk matches its signed digest; after
any refused version it keeps serving the last good one, and it still takes the next good one.

The channel is plaintext on purpose: the MAC must hold without CURVE (it covers the publisher's
snapshot end to end, not one hop), so nothing here relies on the handshake keeping anyone out.
"""

import dataclasses
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from scripted_publisher import ScriptedPublisher, Version, forge_crc  # noqa: E402

from rollspec.transport import BroadcastConfig, RunKeys, SecurityConfig, WeightPublisher, WeightSubscriber  # noqa: E402

CONFIG = BroadcastConfig(chunk_bytes=4096, poll_s=0.05, request_timeout_s=0.2)


def _weights(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"embed": torch.randn(64, 48, generator=gen), "bias": torch.randn(48, generator=gen).bfloat16()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _wait(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


@pytest.fixture
def run_keys() -> RunKeys:
    return RunKeys.create()


@pytest.fixture
def scripted():
    publisher = ScriptedPublisher()
    yield publisher
    publisher.close()


@pytest.fixture
def subscriber(scripted, run_keys):
    sub = WeightSubscriber(scripted.address, config=CONFIG,
                           security=SecurityConfig(curve="off", keys=run_keys.for_role("rollout")))
    yield sub
    sub.close()


def _bad_version(kind: str, run_keys: RunKeys) -> Version:
    weights = _weights(2)
    if kind == "bad_mac":
        version = Version(2, weights, signer=run_keys)
        version.message = dataclasses.replace(version.message, mac=bytes(32))
    elif kind == "tampered_manifest":  # a real MAC, over a manifest someone then edited (version 2 -> 9)
        version = Version(2, weights, signer=run_keys)
        body = version.message.manifest
        assert b"\x02" in body
        version.message = dataclasses.replace(version.message, manifest=body.replace(b"\x02", b"\x09", 1))
    elif kind == "unsigned":
        version = Version(2, weights, signer=None)
    elif kind == "old_run":  # the previous run's publisher, with the previous run's keys
        version = Version(2, weights, signer=RunKeys.create())
    elif kind == "old_run_same_key":  # even if a key were reused across runs, the run id is bound in
        version = Version(2, weights, signer=run_keys, run_id="0123456789abcdef")
    elif kind == "forged_chunk":  # different bytes, CRC forged to the signed CRC: only the digest sees it
        version = Version(2, weights, signer=run_keys)
        honest = version.chunks[1]
        version.chunks[1] = forge_crc(bytes(len(honest) - 4) + b"....", version.crcs[1])
        assert version.chunks[1] != honest
    elif kind == "wrong_chunk":  # different bytes with a CRC that does not match: asked again, never applied
        version = Version(2, weights, signer=run_keys)
        version.chunks[1] = bytes(len(version.chunks[1]))
    else:
        raise AssertionError(kind)
    return version


@pytest.mark.parametrize("kind, reason", [
    ("bad_mac", "unauthenticated"), ("tampered_manifest", "unauthenticated"), ("unsigned", "unauthenticated"),
    ("old_run", "unauthenticated"), ("old_run_same_key", "wrong_run"), ("forged_chunk", "unauthenticated"),
    ("wrong_chunk", None),
])
def test_a_bad_version_is_refused_and_the_last_good_one_keeps_serving(scripted, subscriber, run_keys, kind, reason):
    good = _weights(1)
    scripted.serve(Version(1, good, signer=run_keys))
    assert subscriber.wait_for(1, timeout_s=10) is not None

    scripted.serve(_bad_version(kind, run_keys))
    if reason is not None:
        assert _wait(lambda: subscriber.stats().rejected.get(reason, 0) > 0), subscriber.stats()
    else:
        assert _wait(lambda: subscriber.stats().corrupt_chunks >= 3), subscriber.stats()
    time.sleep(0.3)  # time to (wrongly) finish the fetch, were the bad version being assembled
    version, weights = subscriber.latest()
    assert version == 1 and _same(weights, good)
    stats = subscriber.stats()
    assert stats.versions_applied == 1
    assert (stats.versions_rejected > 0) == (reason is not None)

    newer = _weights(3)
    scripted.serve(Version(3, newer, signer=run_keys))
    current = subscriber.wait_for(3, timeout_s=10)
    assert current is not None and current[0] == 3 and _same(current[1], newer)


def test_the_runs_publisher_signs_and_only_the_runs_subscribers_apply(run_keys):
    publisher = WeightPublisher(config=CONFIG, security=SecurityConfig(curve="off", keys=run_keys.for_role("learner")))
    ours = WeightSubscriber(publisher.address, config=CONFIG,
                            security=SecurityConfig(curve="off", keys=run_keys.for_role("rollout")))
    other_run = WeightSubscriber(publisher.address, config=CONFIG,
                                 security=SecurityConfig(curve="off", keys=RunKeys.create().for_role("rollout")))
    try:
        publisher.publish(1, _weights(1))
        current = ours.wait_for(1, timeout_s=10)
        assert current is not None and _same(current[1], _weights(1))
        assert _wait(lambda: other_run.stats().versions_rejected > 0)
        assert other_run.latest() is None
    finally:
        for endpoint in (ours, other_run, publisher):
            endpoint.close()


def test_with_sign_weights_off_versions_travel_unsigned_and_are_applied(scripted, run_keys):
    unsigned = SecurityConfig(curve="off", keys=run_keys.for_role("rollout"), sign_weights=False)
    sub = WeightSubscriber(scripted.address, config=CONFIG, security=unsigned)
    try:
        scripted.serve(Version(1, _weights(1), signer=None))
        current = sub.wait_for(1, timeout_s=10)
        assert current is not None and _same(current[1], _weights(1)) and sub.stats().rejected == {}
    finally:
        sub.close()
