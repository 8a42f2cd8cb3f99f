"""Processes of the security integration tests (started with spawn, so importable by name): a rollout
worker of a tiny training run, and a rogue process that attacks every endpoint it is told about.

A tiny training run here: the controller (test process) hosts the broker and issues prompts; the
worker turns each prompt into a trajectory computed from the prompt and the current weights; the
learner (test process) consumes trajectories and publishes a new weight version every few of them.
"""

import multiprocessing as mp
import os
import random
import socket
import time

import torch
import zmq

from rollspec.transport import (
    BroadcastConfig,
    Broker,
    ConsumerConfig,
    CurveKeyPair,
    ProducerConfig,
    PromptItem,
    QueueConfig,
    RunKeys,
    SecurityConfig,
    Trajectory,
    WeightPublisher,
    WeightSubscriber,
    ZmqConsumer,
    ZmqProducer,
    codec,
)
from rollspec.transport.weight_auth import sign_manifest
from rollspec.transport.weight_layout import pack_weights

CTX = mp.get_context("spawn")
BROADCAST = BroadcastConfig(chunk_bytes=1 << 16, poll_s=0.05, request_timeout_s=0.3)
FAST_PRODUCER = ProducerConfig(heartbeat_s=0.1, retry_s=0.5)
FAST_CONSUMER = ConsumerConfig(heartbeat_s=0.1, window_items=8)


def weights_for(version: int) -> dict[str, torch.Tensor]:
    """The learner's weights at `version`: every value equals the version (easy to check)."""
    return {"w": torch.full((50_000,), float(version)), "b": torch.full((17,), float(version))}


def completion(prompt: PromptItem, version: int) -> list[int]:
    """What the policy at `version` generates for `prompt` (the learner recomputes it to check)."""
    return [(t * 7 + version) % 97 for t in prompt.token_ids]


def rollout_worker(broker: str, publisher: str, security: SecurityConfig, report: mp.Queue, stop: mp.Event) -> None:
    """Prompt -> trajectory with the newest verified weights; reports anything that looks poisoned."""
    prompts = ZmqConsumer(broker, "prompts", config=FAST_CONSUMER, security=security)
    trajectories = ZmqProducer(broker, "trajectories", config=FAST_PRODUCER, security=security)
    weights = WeightSubscriber(publisher, config=BROADCAST, security=security)
    versions, poisoned = set(), 0
    try:
        current = weights.wait_for(0, timeout_s=60)
        while not stop.is_set():
            for delivery in prompts.get_batch(8, timeout_s=0.05):
                current = weights.latest() or current
                version, tensors = current
                versions.add(version)
                poisoned += int(not all(bool((t == float(version)).all()) for t in tensors.values()))
                prompt = delivery.item
                trajectories.put(Trajectory(
                    prompt_id=prompt.prompt_id, group_id=prompt.group_id, sample_index=prompt.sample_index,
                    prompt_token_ids=prompt.token_ids, token_ids=completion(prompt, version),
                    logprobs=[-1.0] * len(prompt.token_ids), policy_version=version, draft_version=0,
                    accepted_per_position=[], proposed_per_position=[], finish_reason="stop"),
                    msg_id=f"t:{delivery.msg_id}")
                prompts.ack(delivery)
        trajectories.flush(timeout_s=10)
    finally:
        report.put(("worker", {"versions": sorted(versions), "poisoned": poisoned,
                               "weights": weights.stats().as_dict()}))
        for endpoint in (trajectories, prompts, weights):
            endpoint.close()


# --- the rogue ---------------------------------------------------------------------------------------
def _evil_trajectory(i: int) -> Trajectory:
    return Trajectory(prompt_id=f"evil{i}", group_id="evil", sample_index=0, prompt_token_ids=[1],
                      token_ids=[66] * 8, logprobs=[0.0] * 8, policy_version=0, draft_version=0,
                      accepted_per_position=[], proposed_per_position=[], finish_reason="stop")


def _identities(own: RunKeys, leaked_server_public: bytes) -> list[SecurityConfig]:
    """Everything a process without the run's keys can try: plaintext, a whole key set of its own, and
    its own client key pinning the run's (public, so possibly leaked) server key."""
    stolen_pin = own.for_role("rollout")
    stolen_pin = type(stolen_pin)(run_id=stolen_pin.run_id, role="rollout", server_public=leaked_server_public,
                                  client=CurveKeyPair.generate(), allowed_clients=frozenset(),
                                  weights_key=stolen_pin.weights_key)
    return [SecurityConfig(curve="off"), SecurityConfig(curve="on", keys=own.for_role("rollout")),
            SecurityConfig(curve="on", keys=stolen_pin)]


def _raw_tcp_garbage(address: str, rng: random.Random, connections: int) -> int:
    """Speak broken ZMTP at the TCP level: noise, a greeting announcing a 2**62-byte frame, a CURVE
    greeting followed by junk, and one 16 MiB blob. Returns how many connections were made."""
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    greeting = b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\0") + b"\0" + bytes(31)
    curve = b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"CURVE".ljust(20, b"\0") + b"\0" + bytes(31)
    payloads = [lambda: rng.randbytes(rng.randint(1, 2048)), lambda: greeting + b"\x02" + (1 << 62).to_bytes(8, "big"),
                lambda: curve + b"\x04\xff" + rng.randbytes(300), lambda: bytes(16 << 20)]
    made = 0
    for n in range(connections):
        try:
            with socket.create_connection((host, int(port)), timeout=1.0) as conn:
                conn.settimeout(0.5)
                conn.sendall(payloads[3 if n == 0 else rng.randrange(3)]())
                made += 1
        except OSError:  # the server hung up on us mid-send: exactly what it should do
            made += 1
    return made


def _zmq_flood(address: str, seconds: float) -> int:
    """A plaintext DEALER sending malformed, oversized and well-formed-but-forged frames as fast as it can."""
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.connect(address)
    manifest, flat = pack_weights(999, {"w": torch.full((10,), 666.0)}, 4096)
    forged = sign_manifest(manifest, [bytes(32)], run_id="rogue", key=os.urandom(32))
    messages = [[b"\x00" * 3], [os.urandom(64), os.urandom(1 << 20)], [bytes(f) for f in codec.encode(manifest)],
                [bytes(f) for f in codec.encode(forged)], [bytes(f) for f in codec.encode(_evil_trajectory(0))]]
    sent, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock.send_multipart(messages[sent % len(messages)], flags=zmq.NOBLOCK)
            sent += 1
        except zmq.Again:
            time.sleep(0.001)
    sock.close()
    context.term()
    return sent


def rogue(broker: str, publisher: str, leaked_server_public: bytes, report: mp.Queue, stop: mp.Event) -> None:
    """Attack until `stop`: push trajectories, take prompts, subscribe to and publish weights, send
    garbage and flood. Reports what it got out of the run (it should get nothing)."""
    rng = random.Random(os.getpid())
    outcome = {"prompts_taken": 0, "weights_seen": [], "puts_confirmed": 0, "raw_connections": 0, "flood_sent": 0}
    endpoints = []
    own = RunKeys.create()
    own_publisher = WeightPublisher(config=BROADCAST, security=SecurityConfig(curve="on", keys=own.for_role("learner")))
    own_publisher.publish(999, {"w": torch.full((50_000,), 666.0), "b": torch.full((17,), 666.0)})
    report.put(("rogue_publisher", own_publisher.address))
    try:
        for security in _identities(own, leaked_server_public):
            endpoints.append(("put", ZmqProducer(broker, "trajectories", config=FAST_PRODUCER, security=security)))
            endpoints.append(("take", ZmqConsumer(broker, "prompts", config=FAST_CONSUMER, security=security)))
            endpoints.append(("sub", WeightSubscriber(publisher, config=BROADCAST, security=security)))
        round_ = 0
        while not stop.is_set():
            for kind, endpoint in endpoints:
                if kind == "put":
                    try:
                        endpoint.put(_evil_trajectory(round_), timeout_s=0.05)
                    except Exception:  # no credit: the broker never heard us
                        pass
                    outcome["puts_confirmed"] = max(outcome["puts_confirmed"], endpoint.stats().confirmed)
                elif kind == "take":
                    outcome["prompts_taken"] += len(endpoint.get_batch(16, timeout_s=0.01))
                elif endpoint.latest() is not None:
                    outcome["weights_seen"].append(endpoint.latest()[0])
            for address in (broker, publisher):
                outcome["raw_connections"] += _raw_tcp_garbage(address, rng, connections=20 if round_ else 200)
                outcome["flood_sent"] += _zmq_flood(address, seconds=0.2)
            round_ += 1
    finally:
        report.put(("rogue", outcome))
        for kind, endpoint in endpoints:
            endpoint.close() if kind == "sub" else endpoint.close(timeout_s=0.1)
        own_publisher.close()


# --- the tiny training run (tests and bench/security.py) ---------------------------------------------
NUM_PROMPTS = 64
VERSION_EVERY = 16


def _prompt(i: int) -> PromptItem:
    return PromptItem(prompt_id=f"p{i}", group_id=f"g{i // 4}", sample_index=i % 4,
                      token_ids=[i % 50, (3 * i) % 50, 7], policy_version=0)


def _reports(report, until, timeout_s: float) -> list:
    messages, deadline = [], time.monotonic() + timeout_s
    while not until(messages) and time.monotonic() < deadline:
        try:
            messages.append(report.get(timeout=0.1))
        except Exception:  # queue.Empty
            continue
    return messages


def tiny_run(keys: RunKeys, *, with_rogue: bool) -> dict:
    """Run the tiny training; return its counts (and, with a rogue, what the rogue and probes saw)."""
    on = {role: SecurityConfig(curve="on", keys=keys.for_role(role)) for role in ("controller", "learner", "rollout")}
    broker = Broker([QueueConfig(name="prompts", capacity=256, lease_s=5.0),
                     QueueConfig(name="trajectories", capacity=256, lease_s=5.0)], security=on["controller"])
    publisher = WeightPublisher(config=BROADCAST, security=on["learner"])
    publisher.publish(0, weights_for(0))
    learner_in = ZmqConsumer(broker.address, "trajectories", config=FAST_CONSUMER, security=on["learner"])
    report, stop, rogue_stop = CTX.Queue(), CTX.Event(), CTX.Event()
    procs, probe, outcome = [], None, {}
    try:
        if with_rogue:
            procs.append(CTX.Process(target=rogue, args=(broker.address, publisher.address,
                                                                 keys.server.public, report, rogue_stop), daemon=True))
            procs[-1].start()
            address = _reports(report, lambda m: m, timeout_s=60)[0][1]
            probe = WeightSubscriber(address, config=BROADCAST, security=on["rollout"])  # our actor, their server
            assert _wait(lambda: broker.stats("prompts").refused), "the rogue never reached the broker"
        procs.append(CTX.Process(target=rollout_worker, args=(broker.address, publisher.address, on["rollout"],
                                                                    report, stop), daemon=True))
        procs[-1].start()
        prompts, trained, version = broker.sender("prompts"), {}, 0
        deadline, issued = time.monotonic() + 120, 0
        while len(trained) < NUM_PROMPTS and time.monotonic() < deadline:
            if issued < NUM_PROMPTS:  # a wave every 0.25 s: the run lasts long enough to be attacked
                prompts.put_many([_prompt(i) for i in range(issued, issued + 8)],
                                 msg_ids=[f"p{i}" for i in range(issued, issued + 8)])
                issued += 8
            for delivery in learner_in.get_batch(16, timeout_s=0.25):
                index, traj = delivery.msg_id.removeprefix("t:p"), delivery.item
                expected = _prompt(int(index)) if index.isdigit() else None  # anything else is foreign
                trained[delivery.msg_id] = (expected is not None and traj.prompt_token_ids == expected.token_ids
                                            and traj.token_ids == completion(expected, traj.policy_version))
                learner_in.ack(delivery)
                if len(trained) >= (version + 1) * VERSION_EVERY:
                    version += 1
                    publisher.publish(version, weights_for(version))
        # The worker's report of the last version can trail the last trajectory under load: wait for it
        # (bounded) so the calm and attacked runs are compared at the same point, not at a race.
        _wait(lambda: max(publisher.stats().subscriber_versions.values(), default=-1) >= version, 30)
        stop.set()
        seen = _reports(report, lambda m: any(x[0] == "worker" for x in m), 30)
        rogue_stop.set()
        if with_rogue:
            seen += _reports(report, lambda m: any(x[0] == "rogue" for x in seen + m), 60)
            outcome = next(value for key, value in seen if key == "rogue")
        worker = next(value for key, value in seen if key == "worker")
        counts = {
            "trained": len(trained), "consistent": sum(trained.values()), "ids": sorted(trained),
            "versions_published": version, "poisoned": worker["poisoned"],
            "enqueued": {q: broker.stats(q).enqueued for q in ("prompts", "trajectories")},
            "dropped": {q: broker.stats(q).dropped for q in ("prompts", "trajectories")},
            "rejected": broker.stats("prompts").rejected, "publisher_rejected": publisher.stats().rejected,
            "subscribers_reporting": sorted(publisher.stats().subscriber_versions.values())[-1:],
        }
        refused = {"broker": broker.stats("prompts").refused, "publisher": publisher.stats().refused,
                   "probe": probe.stats().refused if probe else {}}
        return {"counts": counts, "refused": refused, "rogue": outcome,
                "probe_latest": probe.latest() if probe else None}
    finally:
        stop.set()
        rogue_stop.set()
        for proc in procs:
            proc.join(20)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        if probe is not None:
            probe.close()
        learner_in.close(timeout_s=0.5)
        publisher.close()
        broker.close()


def _wait(predicate, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


# --- a rogue against a real `rollspec train` run: finds the ZeroMQ endpoints itself ------------------
ZMTP_SIGNATURE = b"\xff" + bytes(8) + b"\x7f"
QUEUES = ("prompts", "trajectories", "scored", "draft_samples")


def zmq_endpoints(root_pid: int) -> set[str]:
    """tcp://127.0.0.1:port of every listening socket of `root_pid` and its descendants (the driver,
    Ray and the actors of one run: never another user's processes) that answers a ZMTP greeting."""
    import psutil

    pids = {root_pid} | {p.pid for p in psutil.Process(root_pid).children(recursive=True)}
    ports = {c.laddr.port for c in psutil.net_connections(kind="tcp")
             if c.status == psutil.CONN_LISTEN and c.pid in pids and c.laddr.ip == "127.0.0.1"}
    found = set()
    for port in ports:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.settimeout(0.5)
                conn.sendall(ZMTP_SIGNATURE)
                if conn.recv(10)[:1] == b"\xff":
                    found.add(f"tcp://127.0.0.1:{port}")
        except OSError:
            continue
    return found


def pipeline_rogue(root_pid: int, report: mp.Queue, stop: mp.Event) -> None:
    """Scan the run's process tree for ZeroMQ endpoints and attack each one the way `rogue` does,
    not knowing which is the broker and which a publisher (it tries every queue name on every one)."""
    rng, own = random.Random(root_pid), RunKeys.create()
    identities = [SecurityConfig(curve="off"), SecurityConfig(curve="on", keys=own.for_role("rollout"))]
    attacked: dict[str, list] = {}
    outcome = {"endpoints": [], "prompts_taken": 0, "weights_seen": 0, "puts_confirmed": 0, "raw_connections": 0}
    try:
        while not stop.is_set():
            for address in zmq_endpoints(root_pid) - set(attacked):
                endpoints = attacked[address] = []
                for security in identities:
                    endpoints.append(("sub", WeightSubscriber(address, config=BROADCAST, security=security)))
                    for queue in QUEUES:
                        endpoints.append(("put", ZmqProducer(address, queue, config=FAST_PRODUCER, security=security)))
                        endpoints.append(("take", ZmqConsumer(address, queue, config=FAST_CONSUMER, security=security)))
            for address, endpoints in attacked.items():
                for kind, endpoint in endpoints:
                    if kind == "put":
                        try:
                            endpoint.put(_evil_trajectory(rng.randrange(1 << 30)), timeout_s=0.01)
                        except Exception:  # no credit: nobody answered
                            pass
                        outcome["puts_confirmed"] = max(outcome["puts_confirmed"], endpoint.stats().confirmed)
                    elif kind == "take":
                        outcome["prompts_taken"] += len(endpoint.get_batch(16, timeout_s=0.0))
                    else:
                        outcome["weights_seen"] += int(endpoint.latest() is not None)
                outcome["raw_connections"] += _raw_tcp_garbage(address, rng, connections=10)
                _zmq_flood(address, seconds=0.1)
            stop.wait(0.5)
    finally:
        outcome["endpoints"] = sorted(attacked)
        report.put(("rogue", outcome))
        for endpoints in attacked.values():
            for kind, endpoint in endpoints:
                endpoint.close() if kind == "sub" else endpoint.close(timeout_s=0.05)
