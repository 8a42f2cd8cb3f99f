"""CURVE on one socket: its keys, the ZAP authenticator that admits only the run's client keys, and
a handshake monitor that counts (and logs) every refused peer.

A refused peer never completes the ZMTP handshake, so libzmq never hands the socket a single frame of
it: nothing it sends reaches the codec, let alone the application. What we can see is the failed
handshake, which the socket monitor reports by kind:

- unknown_key: a CURVE client whose key is not one of the run's (ZAP said no)
- crypto:      a CURVE peer with the wrong keys (it pins another server key, or lacks the secret)
- mechanism:   a peer speaking another security mechanism, when libzmq says so
- protocol:    any other broken handshake (garbage bytes, malformed commands)
- handshake:   a handshake libzmq gives no detail for (seen for plaintext peers and dropped links)
"""

import logging
import threading
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from rollspec.transport.errors import ConfigError
from rollspec.transport.keys import ChannelKeys

log = logging.getLogger(__name__)
ZAP_DOMAIN = "rollspec"
HANDSHAKE_IVL_MS = 5_000
"""A peer that has not finished its handshake after this long is dropped (libzmq's default is 30 s):
a client that opens connections and never speaks holds a descriptor for at most this long."""
_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
           | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED)


def _refusal_kind(event: int, value: int) -> str:
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return "unknown_key"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return "mechanism"
        if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            return "crypto"
        return "protocol"
    return "handshake"


class RunAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP handler (its own thread, in the socket's context) admitting exactly `allowed`
    client keys. libzmq asks it during every CURVE handshake on a server socket of that context."""

    def __init__(self, context: zmq.Context[Any], allowed: frozenset[bytes], name: str):
        super().__init__(context, log=logging.getLogger("rollspec.transport.zap"))
        self.allowed = allowed
        self.name = name
        self.lock = threading.Lock()
        self.denied = 0
        self._peer = b""

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        """Remember the peer address (frame 3 of a ZAP request) for the log line, then decide."""
        self._peer = msg[3] if len(msg) > 3 else b"?"
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:
        """Credentials-provider hook: True for one of the run's client keys (Z85)."""
        if key in self.allowed:
            return True
        with self.lock:
            self.denied += 1
            count = self.denied
        if count & (count - 1) == 0:  # 1, 2, 4, ...: a flood of attempts cannot flood the log
            log.error("%s: refused CURVE client key %s from %s (refusal #%d)", self.name, key.decode(errors="replace"),
                      self._peer.decode(errors="replace"), count)
        return False


class PeerGuard:
    """CURVE keys, ZAP authenticator (servers) and handshake monitor of one endpoint socket.

    Build it before the socket binds or connects: libzmq lets every CURVE client in when no ZAP
    handler is bound yet. The monitor is read on the endpoint's I/O thread (`on_monitor`); `refused`
    is read under `lock` by stats(). `close()` must run after the socket is closed and before the
    context is terminated (IoLoop does this)."""

    def __init__(self, context: zmq.Context[Any], sock: zmq.Socket[Any], keys: ChannelKeys, *, server: bool,
                 name: str):
        self.name = name
        self.lock = threading.Lock()
        self.refused: dict[str, int] = {}
        self.accepted = 0
        self.authenticator: RunAuthenticator | None = None
        if server:
            if keys.server is None:
                raise ConfigError("keys.server", None, f"the run's server key pair to bind {name} with CURVE")
            self.authenticator = RunAuthenticator(context, keys.allowed_clients, name)
            self.authenticator.start()
            self.authenticator.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=self.authenticator)
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.server.public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, keys.server.secret)
            sock.setsockopt_string(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
            sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)
        else:
            sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.client.public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, keys.client.secret)
        self._sock = sock
        self.monitor: zmq.Socket[Any] = sock.get_monitor_socket(_EVENTS)

    def on_monitor(self) -> None:
        """Drain handshake events: count refusals by kind (logged at counts 1, 2, 4, ...) and accepts."""
        while True:
            try:
                event = parse_monitor_message(self.monitor.recv_multipart(flags=zmq.NOBLOCK))
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                with self.lock:
                    self.accepted += 1
                continue
            kind = _refusal_kind(event["event"], event["value"])
            with self.lock:
                count = self.refused[kind] = self.refused.get(kind, 0) + 1
            if count & (count - 1) == 0:
                log.error("%s: refused a peer on %s at the CURVE handshake (%s, #%d of this kind)", self.name,
                          event["endpoint"].decode(errors="replace"), kind, count)

    def counts(self) -> dict[str, int]:
        """Refused handshakes so far, by kind."""
        with self.lock:
            return dict(self.refused)

    def close(self) -> None:
        """Stop monitoring and the ZAP thread (the endpoint socket is already closed)."""
        self.monitor.close(linger=0)
        if self.authenticator is not None:
            self.authenticator.stop()
