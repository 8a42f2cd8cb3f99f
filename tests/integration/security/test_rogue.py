"""A rogue process without the run's keys attacks every endpoint of a tiny training run on loopback
(CURVE switched on for loopback, as a cluster run has it on for real interfaces). It tries to push
trajectories, take prompts, subscribe to weights, publish its own weight version, send malformed and
oversized frames and flood the channels. Nothing it sends is applied or trained on: the run ends
with exactly the counts of an undisturbed run, and every refusal is counted where it happened.
"""

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import security_workers as sw  # noqa: E402

from rollspec.transport import (  # noqa: E402
    Broker,
    PromptItem,
    QueueConfig,
    RunKeys,
    SecurityConfig,
    WeightPublisher,
    WeightSubscriber,
    ZmqConsumer,
)

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


def _tiny_run(keys: RunKeys, *, with_rogue: bool) -> dict:
    """Run the tiny training; return its counts (and, with a rogue, what the rogue and probes saw)."""
    on = {role: SecurityConfig(curve="on", keys=keys.for_role(role)) for role in ("controller", "learner", "rollout")}
    broker = Broker([QueueConfig(name="prompts", capacity=256, lease_s=5.0),
                     QueueConfig(name="trajectories", capacity=256, lease_s=5.0)], security=on["controller"])
    publisher = WeightPublisher(config=sw.BROADCAST, security=on["learner"])
    publisher.publish(0, sw.weights_for(0))
    learner_in = ZmqConsumer(broker.address, "trajectories", config=sw.FAST_CONSUMER, security=on["learner"])
    report, stop, rogue_stop = sw.CTX.Queue(), sw.CTX.Event(), sw.CTX.Event()
    procs, probe, outcome = [], None, {}
    try:
        if with_rogue:
            procs.append(sw.CTX.Process(target=sw.rogue, args=(broker.address, publisher.address,
                                                                 keys.server.public, report, rogue_stop), daemon=True))
            procs[-1].start()
            address = _reports(report, lambda m: m, timeout_s=60)[0][1]
            probe = WeightSubscriber(address, config=sw.BROADCAST, security=on["rollout"])  # our actor, their server
            assert _wait(lambda: broker.stats("prompts").refused), "the rogue never reached the broker"
        procs.append(sw.CTX.Process(target=sw.rollout_worker, args=(broker.address, publisher.address, on["rollout"],
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
                                            and traj.token_ids == sw.completion(expected, traj.policy_version))
                learner_in.ack(delivery)
                if len(trained) >= (version + 1) * VERSION_EVERY:
                    version += 1
                    publisher.publish(version, sw.weights_for(version))
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


@pytest.fixture(scope="module")
def runs():
    keys = RunKeys.create()
    return {"calm": _tiny_run(keys, with_rogue=False), "attacked": _tiny_run(RunKeys.create(), with_rogue=True)}


def test_an_attacked_run_trains_on_exactly_what_an_undisturbed_run_trains_on(runs):
    calm, attacked = runs["calm"]["counts"], runs["attacked"]["counts"]
    assert calm["trained"] == calm["consistent"] == NUM_PROMPTS and calm["poisoned"] == 0
    assert attacked == calm


def test_the_rogue_got_nothing_out_of_the_run(runs):
    rogue = runs["attacked"]["rogue"]
    assert rogue["raw_connections"] > 0 and rogue["flood_sent"] > 0  # it did try
    assert rogue["prompts_taken"] == 0 and rogue["weights_seen"] == [] and rogue["puts_confirmed"] == 0
    assert runs["attacked"]["probe_latest"] is None  # our actor never loaded the rogue's version


def test_every_refusal_is_counted_where_it_happened(runs):
    refused = runs["attacked"]["refused"]
    assert {"crypto", "unknown_key"} <= set(refused["broker"]), refused
    assert {"crypto", "unknown_key"} <= set(refused["publisher"]), refused
    assert refused["probe"], refused  # the client side refuses a server without the run's key
    assert runs["calm"]["refused"] == {"broker": {}, "publisher": {}, "probe": {}}
