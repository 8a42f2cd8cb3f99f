"""One background I/O thread per endpoint: owns the socket, runs the protocol, never blocks on send.

Application threads talk to it only through the handler's locked state plus `wake()`. zmq sockets are
not thread-safe, so only this thread touches the socket; the app thread's calls stay cheap and the
endpoint keeps heartbeating while the app computes for minutes.
"""

import logging
import os
import threading
import time
import weakref
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import zmq

from rollspec.transport.errors import ChannelClosed
from rollspec.transport.faults import FaultInjector, FaultPlan
from rollspec.transport.peer_guard import PeerGuard

log = logging.getLogger(__name__)
MAX_BURST = 256  # messages received per poll wake-up before servicing timers again
# pyzmq's own send_multipart / recv_multipart are Python over its Cython socket: a type check per frame,
# enum flag arithmetic (Python-level IntFlag ops) per frame and a getsockopt per received frame cost more
# than libzmq's part of a small send. These call the Cython methods with int flags instead.
POLLIN = int(zmq.POLLIN)
_NOBLOCK, _MORE = int(zmq.NOBLOCK), int(zmq.NOBLOCK | zmq.SNDMORE)
_send, _recv, _poll = zmq.backend.Socket.send, zmq.backend.Socket.recv, zmq.zmq_poll


def send_frames(socket: zmq.Socket[Any], frames: list[Any]) -> None:
    """socket.send_multipart(frames, flags=NOBLOCK, copy=False): zmq.Again if the peer has no room
    (libzmq checks room at the first part only, so a multipart message goes whole or not at all)."""
    last = len(frames) - 1
    for i in range(last):
        _send(socket, frames[i], _MORE, False)
    _send(socket, frames[last], _NOBLOCK, False)


def is_readable(item: list[tuple[Any, int]]) -> bool:
    """Whether a message is queued in the socket of item = [(socket, POLLIN)] now. zmq_poll with no
    wait reads ZMQ_EVENTS inside libzmq (so it takes in pending commands like socket.get(zmq.EVENTS)
    does) without pyzmq's per-call option lookup, a Python enum construction."""
    return bool(_poll(item, 0))


def recv_frames(socket: zmq.Socket[Any]) -> list[zmq.Frame]:
    """socket.recv_multipart(flags=NOBLOCK, copy=False) (zmq.Again if nothing is queued)."""
    frame = _recv(socket, _NOBLOCK, False)
    parts = [frame]
    while frame.more:
        frame = _recv(socket, _NOBLOCK, False)
        parts.append(frame)
    return parts


class IoHandler(Protocol):
    """Protocol engine driven by an IoLoop; all three methods run on the I/O thread.

    The loop calls `service` when the time it returned has come, after a `wake()`, and, if the handler's
    `service_after_message` is true, after each burst of inbound messages. A handler whose messages never
    make anything due sets it false and saves a service pass per message (a wake-up's worth of Python)."""

    service_after_message: bool

    def on_message(self, frames: list[zmq.Frame]) -> None:
        """Handle one inbound multipart message (called on the I/O thread)."""

    def service(self, now: float) -> float:
        """Send what is due (outbox, retries, heartbeats); return the next time to be called."""

    def on_stop(self) -> None:
        """Last words on a clean stop (e.g. a detach message); sent with a short linger."""


class IoLoop:
    """Poll loop for `socket` driving `handler`. Sends go through a FaultInjector built from `faults`.
    With a CURVE `guard`, the loop also reads its handshake monitor and closes it before the context."""

    def __init__(self, name: str, context: zmq.Context[Any], socket: zmq.Socket[Any], handler: IoHandler,
                 faults: FaultPlan, routing_frames: int, guard: PeerGuard | None = None) -> None:
        self.name = name
        self._faulty = faults.is_active  # without faults nothing is ever held back: no release_due per round
        self.context = context
        self.socket = socket
        self.handler = handler
        self.guard = guard
        self.injector = FaultInjector(faults, routing_frames=routing_frames)
        self.send_failures = 0
        self.failure: BaseException | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._wake_pending = False
        self._pipe_closed = False
        self._stopping = False
        self._ended = False  # _run has returned (or is about to)
        self._thread = threading.Thread(target=self._run, name=f"rollspec-io-{name}", daemon=True)
        # Stop at interpreter exit even if the owner never closed us (a weak reference, so this hook
        # does not keep the loop alive).
        weakref.finalize(self, _stop_if_alive, weakref.ref(self))

    def start(self) -> None:
        """Start the I/O thread."""
        self._thread.start()

    def wake(self) -> None:
        """Make the loop call handler.service soon. Safe from any thread; coalesces repeated calls."""
        if not self._wake_pending and not self._pipe_closed:
            self._wake_pending = True
            os.write(self._wake_w, b"\0")

    def send(self, frames: list[Any]) -> None:
        """Queue `frames` for sending (I/O thread only). A full or unroutable peer drops the message:
        every protocol message is either resent on timeout or superseded by a later one."""
        if self._faulty:
            self.injector.send(frames, self._raw_send, time.monotonic())
        else:  # what the injector does without a plan, minus two calls per message
            self.injector.counts.sent += 1
            self._raw_send(frames)

    def check(self) -> None:
        """Raise ChannelClosed if the loop has stopped (with its failure chained, if any)."""
        if self.failure is not None:
            raise ChannelClosed(f"{self.name}: I/O thread failed") from self.failure
        if self._stopping or self._ended:  # a flag, not Thread.is_alive(): this runs in every get / put
            raise ChannelClosed(f"{self.name}: closed")

    def refused(self) -> dict[str, int]:
        """Peers refused at the CURVE handshake so far, by kind ({} without CURVE). Any thread."""
        return self.guard.counts() if self.guard is not None else {}

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the loop and close the socket (on the I/O thread, which owns it)."""
        self._stopping = True
        self.wake()
        if threading.current_thread() is self._thread:
            return
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        else:
            self.socket.close(linger=0)
            self._close_guard()
            self.context.term()
        if not self._thread.is_alive() and not self._pipe_closed:
            # Closed here, after the join, so a late wake() can never write into a reused descriptor.
            self._pipe_closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _raw_send(self, frames: list[Any]) -> None:
        try:
            send_frames(self.socket, frames)
        except zmq.Again:
            self.send_failures += 1
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.send_failures += 1

    def _run(self) -> None:
        """The I/O thread: `_loop` until stopped, then flush and close (the lifecycle every loop shares)."""
        linger_ms = 0
        try:
            self._loop()
            with self._socket_owned():
                self.injector.flush(self._raw_send)
                self.handler.on_stop()
            linger_ms = 200
        except Exception as exc:  # a bug, not bad input (handlers reject bad input themselves)
            log.exception("%s: I/O thread failed", self.name)
            self.failure = exc
        finally:
            try:
                with self._socket_owned():
                    self._close_all(linger_ms)
            finally:
                self._ended = True

    def _socket_owned(self) -> AbstractContextManager[Any]:
        """Held around every use of the socket outside `_loop` (nothing to hold: only this thread uses it)."""
        return nullcontext()

    def _wake_items(self) -> list[tuple[Any, int]]:
        """Poll items besides the socket: the wake pipe and, with a guard, its monitor."""
        items: list[tuple[Any, int]] = [(self._wake_r, zmq.POLLIN)]
        if self.guard is not None:
            items.append((self.guard.monitor, zmq.POLLIN))
        return items

    def _loop(self) -> None:
        items = [(self.socket, zmq.POLLIN), *self._wake_items()]
        guard = self.guard
        handler, after_message = self.handler, self.handler.service_after_message
        serve, service_at = True, 0.0
        while not self._stopping:
            now = time.monotonic()
            if serve or now >= service_at:
                service_at, serve = handler.service(now), False
            deadline = service_at
            if self._faulty:
                due = self.injector.release_due(self._raw_send, now)
                if due is not None:
                    deadline = min(deadline, due)
            timeout_ms = max(0.0, (deadline - time.monotonic()) * 1000.0) + 1  # +1: never spin on a sub-ms rest
            for source, _ in zmq.zmq_poll(items, int(timeout_ms)):
                if source is self.socket:
                    self._receive_burst()
                    serve = serve or after_message
                elif guard is not None and source is guard.monitor:
                    guard.on_monitor()
                else:
                    self._drain_wake()
                    serve = True

    def _close_all(self, linger_ms: int) -> None:
        self._stopping = True
        self.socket.close(linger=linger_ms)
        self._close_guard()  # its monitor and ZAP sockets live in our context: closed before term()
        self.context.term()  # returns once libzmq holds no more of our (zero-copy) buffers

    def _close_guard(self) -> None:
        if self.guard is not None:
            self.guard.close()

    def _receive_burst(self) -> None:
        socket, on_message, item = self.socket, self.handler.on_message, [(self.socket, POLLIN)]
        for _ in range(MAX_BURST):
            try:
                frames = recv_frames(socket)
            except zmq.Again:
                return
            on_message(frames)
            # Whether another message is queued: no zmq.Again raised to end each burst.
            if not is_readable(item):
                return

    def _drain_wake(self) -> None:
        # Drain first, then clear the flag: a wake() landing in between then writes a fresh byte.
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        self._wake_pending = False


def _stop_if_alive(ref: "weakref.ref[IoLoop]") -> None:
    loop = ref()
    if loop is not None:
        loop.stop()
