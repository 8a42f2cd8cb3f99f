"""Socket creation and addresses: the one place where socket options (and, later, CURVE keys) are set."""

import uuid
from typing import Any

import zmq

from rollspec.transport.config import CodecLimits
from rollspec.transport.errors import ConfigError

DEFAULT_BIND = "tcp://127.0.0.1:*"
"""Loopback with an OS-chosen port: nothing is reachable from other hosts unless asked for."""
SOCKET_HWM = 100_000
"""Messages queued per peer. Credit windows keep real queues far below this; it is a backstop."""


def open_socket(kind: int, *, limits: CodecLimits, bind_address: str | None = None,
                connect_address: str | None = None) -> tuple[zmq.Context[Any], zmq.Socket[Any], str]:
    """A private context and a bound (servers) or connected (clients, with a random identity) socket.

    Each endpoint owns its context so closing it can terminate the context, which waits until libzmq
    has let go of every zero-copy buffer: freeing a tensor zmq is still sending crashes the process.
    """
    context: zmq.Context[Any] = zmq.Context(io_threads=1)
    identity = None if bind_address else uuid.uuid4().bytes
    sock = make_socket(context, kind, limits=limits, identity=identity)
    try:
        if bind_address is not None:
            address = bind(sock, bind_address)
        elif connect_address is not None:
            address = check_address(connect_address)
            sock.connect(address)
        else:
            raise ConfigError("open_socket", None, "a bind_address or a connect_address")
    except (zmq.ZMQError, ConfigError):
        sock.close(linger=0)
        context.term()
        raise
    return context, sock, address


def make_socket(context: zmq.Context[Any], kind: int, *, limits: CodecLimits,
                identity: bytes | None = None) -> zmq.Socket[Any]:
    """A socket with rollspec's options: bounded inbound frame size, no linger on close, unroutable
    ROUTER sends raise instead of vanishing. CURVE authentication will be configured here."""
    sock: zmq.Socket[Any] = context.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    # libzmq checks MAXMSGSIZE per frame and disconnects a peer that exceeds it.
    sock.setsockopt(zmq.MAXMSGSIZE, max(limits.max_frame_bytes, limits.max_header_bytes + 4))
    sock.setsockopt(zmq.SNDHWM, SOCKET_HWM)
    sock.setsockopt(zmq.RCVHWM, SOCKET_HWM)
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
