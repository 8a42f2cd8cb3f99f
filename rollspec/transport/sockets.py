"""Socket creation and addresses: the one place where socket options and CURVE keys are set."""

import uuid
from typing import Any, NamedTuple

import zmq

from rollspec.transport.config import CodecLimits
from rollspec.transport.errors import ConfigError
from rollspec.transport.peer_guard import PeerGuard
from rollspec.transport.security import NO_SECURITY, SecurityConfig

DEFAULT_BIND = "tcp://127.0.0.1:*"
"""Loopback with an OS-chosen port: nothing is reachable from other hosts unless asked for."""
SOCKET_HWM = 100_000
"""Messages queued per peer. Credit windows keep real queues far below this; it is a backstop."""
COPY_THRESHOLD = 1 << 20
"""Frames sent with copy=False below this size are copied anyway. pyzmq's default (64 KiB) sends a
segment of 64 small items zero-copy, and each zero-copy frame costs a Frame object plus a wake-up of
pyzmq's garbage-collector thread: more than copying the bytes. Tensors above it still go zero-copy."""


class Endpoint(NamedTuple):
    """An opened socket with its private context, concrete address and CURVE guard (None: plaintext)."""

    context: zmq.Context[Any]
    socket: zmq.Socket[Any]
    address: str
    guard: PeerGuard | None


def open_endpoint(kind: int, *, limits: CodecLimits, security: SecurityConfig = NO_SECURITY, name: str = "endpoint",
                  bind_address: str | None = None, connect_address: str | None = None) -> Endpoint:
    """A private context and a bound (servers) or connected (clients, with a random identity) socket,
    with CURVE set up first when `security` asks for it for this address (see SecurityConfig).

    Each endpoint owns its context so closing it can terminate the context, which waits until libzmq
    has let go of every zero-copy buffer: freeing a tensor zmq is still sending crashes the process.
    """
    if (bind_address is None) == (connect_address is None):
        raise ConfigError("open_endpoint", (bind_address, connect_address), "exactly one of bind / connect address")
    address = check_address(bind_address if bind_address is not None else connect_address)  # type: ignore[arg-type]
    curve = security.uses_curve(address, binds=bind_address is not None)
    context: zmq.Context[Any] = zmq.Context(io_threads=1)
    sock = make_socket(context, kind, limits=limits, identity=None if bind_address else uuid.uuid4().bytes)
    guard = None
    try:
        if curve:
            assert security.keys is not None  # uses_curve raised otherwise
            # Before bind / connect: a CURVE server with no ZAP handler yet would admit any client key.
            guard = PeerGuard(context, sock, security.keys, server=bind_address is not None, name=name)
        if bind_address is not None:
            address = bind(sock, address)
        else:
            sock.connect(address)
    except (zmq.ZMQError, ConfigError):
        sock.close(linger=0)
        if guard is not None:
            guard.close()
        context.term()
        raise
    return Endpoint(context, sock, address, guard)


def open_socket(kind: int, *, limits: CodecLimits, bind_address: str | None = None,
                connect_address: str | None = None) -> tuple[zmq.Context[Any], zmq.Socket[Any], str]:
    """A plaintext endpoint's context, socket and address (kept for callers without keys: a
    non-loopback address raises ConfigError, since it would need CURVE; see open_endpoint)."""
    if bind_address is None and connect_address is None:
        raise ConfigError("open_socket", None, "a bind_address or a connect_address")
    endpoint = open_endpoint(kind, limits=limits, bind_address=bind_address, connect_address=connect_address)
    return endpoint.context, endpoint.socket, endpoint.address


def make_socket(context: zmq.Context[Any], kind: int, *, limits: CodecLimits,
                identity: bytes | None = None) -> zmq.Socket[Any]:
    """A socket with rollspec's options: bounded inbound frame size, no linger on close, unroutable
    ROUTER sends raise instead of vanishing. CURVE is configured by PeerGuard (see open_endpoint)."""
    sock: zmq.Socket[Any] = context.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    # libzmq checks MAXMSGSIZE per frame and disconnects a peer that exceeds it.
    sock.setsockopt(zmq.MAXMSGSIZE, max(limits.max_frame_bytes, limits.max_header_bytes + 4))
    sock.setsockopt(zmq.SNDHWM, SOCKET_HWM)
    sock.setsockopt(zmq.RCVHWM, SOCKET_HWM)
    sock.copy_threshold = COPY_THRESHOLD
    if kind == zmq.ROUTER:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    return sock


def check_address(address: str) -> str:
    """Return `address` if it is a tcp://, ipc:// or inproc:// endpoint, else raise ConfigError."""
    if not isinstance(address, str) or address.split("://", 1)[0] not in ("tcp", "ipc", "inproc") \
            or "://" not in address:
        raise ConfigError("address", address, "tcp://host:port, ipc://path or inproc://name")
    return address


def bind(sock: zmq.Socket[Any], address: str) -> str:
    """Bind and return the concrete endpoint (with the port chosen for tcp://...:*)."""
    sock.bind(check_address(address))
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)
