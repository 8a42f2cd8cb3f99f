"""CURVE on the data plane: per-run keys, when CURVE is on, and which peers a server admits.

Sockets here are real (tcp on 127.0.0.1, with security.curve="on" as the tests' loopback switch);
a refused peer must never get an item in or out, and must show up in the server's refusal counters.
"""

import dataclasses
import logging
import pickle
import time

import pytest
import zmq

from rollspec.transport import (
    Broker,
    ConfigError,
    ConsumerConfig,
    CurveKeyPair,
    ProducerConfig,
    PromptItem,
    QueueConfig,
    RunKeys,
    SecurityConfig,
    ZmqConsumer,
    ZmqProducer,
)
from rollspec.transport.keys import SERVER_ROLES
from rollspec.transport.security import is_loopback
from rollspec.transport.sockets import open_endpoint, open_socket

FAST = dict(heartbeat_s=0.05)


def _prompt(i: int) -> PromptItem:
    return PromptItem(prompt_id=f"p{i}", group_id="g", sample_index=0, token_ids=[i], policy_version=0)


def _on(keys: RunKeys, role: str, **replace) -> SecurityConfig:
    channel = keys.for_role(role)
    return SecurityConfig(curve="on", keys=dataclasses.replace(channel, **replace) if replace else channel)


def _wait(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def run_keys() -> RunKeys:
    return RunKeys.create()


@pytest.fixture
def broker(run_keys):
    broker = Broker([QueueConfig(name="q", lease_s=2.0)], security=_on(run_keys, "controller"))
    yield broker
    broker.close()


# --- keys ------------------------------------------------------------------------------------------
def test_key_pairs_validate_and_never_show_their_secret(run_keys):
    pair = CurveKeyPair.generate()
    assert pair.secret.decode() not in repr(pair) and pair.secret.decode() not in repr(run_keys.for_role("learner"))
    with pytest.raises(ConfigError, match="Z85"):
        CurveKeyPair(public=b"short", secret=pair.secret)
    with pytest.raises(ConfigError, match="public key of the given secret"):
        CurveKeyPair(public=CurveKeyPair.generate().public, secret=pair.secret)


def test_each_role_gets_its_own_client_key_and_only_server_roles_the_server_secret(run_keys):
    roles = {role: run_keys.for_role(role) for role, _ in run_keys.clients}
    assert len({keys.client.public for keys in roles.values()}) == len(roles)
    assert {role for role, keys in roles.items() if keys.can_serve} == set(SERVER_ROLES)
    assert all(keys.allowed_clients == run_keys.allowed_clients for keys in roles.values())
    assert pickle.loads(pickle.dumps(roles["rollout"])) == roles["rollout"]  # Ray pickles constructor args
    with pytest.raises(ConfigError, match="role"):
        run_keys.for_role("intruder")
    assert RunKeys.create().run_id != run_keys.run_id


# --- when CURVE is on --------------------------------------------------------------------------------
@pytest.mark.parametrize("address, loopback", [
    ("tcp://127.0.0.1:*", True), ("tcp://127.0.0.2:5555", True), ("tcp://[::1]:5555", True),
    ("tcp://localhost:5555", True), ("ipc:///tmp/x.sock", True), ("inproc://x", True),
    ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False), ("tcp://[::]:5555", False), ("tcp://eth0:*", False),
    ("tcp://10.1.2.3:5555", False), ("tcp://127.0.0.1:0;10.1.2.3:5555", False),
])
def test_only_loopback_and_local_transports_count_as_loopback(address, loopback):
    assert is_loopback(address) is loopback


def test_auto_mode_turns_curve_on_for_reachable_addresses_and_refuses_them_without_keys(run_keys, caplog):
    auto = SecurityConfig(keys=run_keys.for_role("controller"))
    assert not auto.uses_curve("tcp://127.0.0.1:*", binds=True)
    assert auto.uses_curve("tcp://0.0.0.0:*", binds=True) and auto.uses_curve("tcp://10.0.0.1:5", binds=False)
    with pytest.raises(ConfigError, match="reachable from other hosts"):
        SecurityConfig().uses_curve("tcp://0.0.0.0:*", binds=True)
    with pytest.raises(ConfigError, match="binds servers"):
        SecurityConfig(curve="on", keys=run_keys.for_role("rollout")).uses_curve("tcp://127.0.0.1:*", binds=True)
    with pytest.raises(ConfigError, match="curve='on'"):
        SecurityConfig(curve="on")
    with caplog.at_level(logging.WARNING):
        assert not SecurityConfig(curve="off").uses_curve("tcp://0.0.0.0:*", binds=True)
    assert "without CURVE" in caplog.text


def test_a_non_loopback_bind_without_keys_fails_before_any_socket_exists():
    with pytest.raises(ConfigError, match="reachable from other hosts"):
        Broker([QueueConfig(name="q")], bind_address="tcp://0.0.0.0:*")
    with pytest.raises(ConfigError, match="reachable from other hosts"):
        open_socket(zmq.ROUTER, limits=ProducerConfig().limits, bind_address="tcp://0.0.0.0:*")


# --- who gets in -------------------------------------------------------------------------------------
def test_run_members_exchange_items_over_curve(run_keys, broker):
    producer = ZmqProducer(broker.address, "q", security=_on(run_keys, "rollout"), config=ProducerConfig(**FAST))
    consumer = ZmqConsumer(broker.address, "q", security=_on(run_keys, "reward"), config=ConsumerConfig(**FAST))
    try:
        producer.put_many([_prompt(i) for i in range(20)])
        got = []
        assert _wait(lambda: got.extend(d for d in consumer.get_batch(64, 0.05)) or len(got) == 20)
        assert sorted(d.item.token_ids[0] for d in got) == list(range(20))
        consumer.ack_many(got)
    finally:
        producer.close()
        consumer.close()
    assert broker.stats("q").refused == {}


@pytest.mark.parametrize("rogue, kinds", [
    ("plaintext", {"mechanism", "handshake"}),   # no CURVE at all
    ("other_run", {"crypto"}),                   # a whole key set of another run: pins the wrong server
    ("leaked_server_key", {"unknown_key"}),      # knows the server's public key, has no client key of the run
])
def test_a_peer_without_the_runs_client_key_gets_nothing_in_or_out(run_keys, broker, rogue, kinds):
    legit = broker.sender("q")
    legit.put_many([_prompt(i) for i in range(5)])
    if rogue == "plaintext":
        security = SecurityConfig(curve="off")
    elif rogue == "other_run":
        security = _on(RunKeys.create(), "rollout")
    else:
        security = _on(run_keys, "rollout", client=CurveKeyPair.generate())
    producer = ZmqProducer(broker.address, "q", security=security, config=ProducerConfig(**FAST))
    consumer = ZmqConsumer(broker.address, "q", security=security, config=ConsumerConfig(**FAST))
    try:
        with pytest.raises(Exception, match="credit"):  # BackPressureTimeout: the broker never heard it
            producer.put(_prompt(99), timeout_s=1.0)
        assert consumer.get_batch(16, timeout_s=1.0) == []
        assert _wait(lambda: set(broker.stats("q").refused) & kinds)
    finally:
        producer.close(timeout_s=0.1)
        consumer.close(timeout_s=0.1)
    stats = broker.stats("q")
    assert (stats.enqueued, stats.delivered, stats.producers, stats.consumers) == (5, 0, 0, 0)
    assert stats.rejected == {}  # refused at the handshake: not one frame reached the codec


def test_a_client_refuses_a_server_that_does_not_hold_the_runs_server_key(run_keys):
    impostor = Broker([QueueConfig(name="q")], security=_on(RunKeys.create(), "controller"))
    impostor.sender("q").put(_prompt(1))
    consumer = ZmqConsumer(impostor.address, "q", security=_on(run_keys, "rollout"), config=ConsumerConfig(**FAST))
    try:
        assert consumer.get_batch(4, timeout_s=1.0) == []
        assert _wait(lambda: consumer.stats().refused)
    finally:
        consumer.close(timeout_s=0.1)
        impostor.close()


def test_curve_endpoints_release_their_zap_thread_and_context_on_close(run_keys):
    endpoint = open_endpoint(zmq.ROUTER, limits=ProducerConfig().limits, security=_on(run_keys, "controller"),
                             bind_address="tcp://127.0.0.1:*")
    assert endpoint.guard is not None and endpoint.guard.authenticator.is_alive()
    endpoint.socket.close(linger=0)
    endpoint.guard.close()
    endpoint.context.term()  # would hang if the guard left a socket open in the context
    assert not endpoint.guard.authenticator.is_alive()
