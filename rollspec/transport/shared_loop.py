"""An I/O loop whose socket the application thread drives itself while it is inside a call.

With a plain IoLoop each delivery costs the consumer process two extra thread wake-ups: the I/O thread
receives it and wakes the application, and the application's ack wakes the I/O thread to send it. Here
whoever holds `own` owns the socket (zmq sockets are not thread-safe): the application takes it inside
get_batch (polls, receives, services) and to send its acks; the I/O thread never polls the socket, it
only wakes on its timers and on wake(), takes the socket if it is free, drains what arrived and
services (heartbeats, ack resends). So a consumer whose application stops calling keeps heartbeating
and reporting what it holds, and one whose application is waiting in get_batch needs no other thread.

With watch_socket (the broker, whose peers send at any time) the I/O thread also wakes when the socket
may have something to read: it polls the socket's ZMQ_FD, a plain descriptor libzmq signals when
commands reach the socket, never the socket itself (zmq_poll on a socket is a socket operation). That
descriptor is edge-triggered: any send or receive can take in the command that made a message readable
without leaving a signal behind, so whoever lets go of the socket first checks ZMQ_EVENTS and receives
until nothing is queued (`settle`); after that check, the next arrival signals the descriptor again.
"""

import threading
import time
from typing import Any, Callable

import zmq

from rollspec.transport.errors import ChannelClosed
from rollspec.transport.io_loop import MAX_BURST, IoLoop, is_readable, recv_frames

_MAX_PUMP_S = 0.2  # the longest the application holds the socket in one poll: bounds a wake()'s delay
_RETRY_S = 0.005    # the I/O thread's retry when the application held the socket as service was asked for


class SharedIoLoop(IoLoop):
    """IoLoop for an endpoint whose application thread receives and sends itself (see module doc).
    Every use of the socket (and of the fault injector) happens with `own` held."""

    def __init__(self, *args: Any, watch_socket: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.own = threading.Lock()
        self._watch_fd: int | None = self.socket.get(zmq.FD) if watch_socket else None
        self._serve = True          # service() asked for (wake) and not yet run
        self._service_at = 0.0      # when service() wants to run next
        self._closed = False
        self._socket_item: list[tuple[Any, int]] = [(self.socket, zmq.POLLIN)]

    def wake(self) -> None:
        """Ask for a service pass soon (by the I/O thread, or by the application if it holds the socket)."""
        self._serve = True
        super().wake()

    # --- with `own` held (any thread) ---------------------------------------------------------------
    def pump(self, timeout_s: float) -> bool:
        """Service if due, then receive: what is queued now, else what arrives within timeout_s (at most
        _MAX_PUMP_S, and no later than the next service). Returns whether anything was received."""
        self._enter()
        now = time.monotonic()
        self._serve_if_due(now)
        if self._drain():
            return True
        wait_s = min(timeout_s, _MAX_PUMP_S, self._service_at - now)
        if wait_s > 0 and zmq.zmq_poll(self._socket_item, max(1, int(wait_s * 1000))):
            return self._drain()
        return False

    def serve(self) -> None:
        """Run a service pass now (sends queued acks, or dispatches what a local sender queued)."""
        self._enter()
        self._serve = True
        self._serve_if_due(time.monotonic())
        if self._watch_fd is not None:
            self.settle()

    def serve_by(self, at: float) -> None:
        """Run the next service pass no later than `at` (a pump's wait ends then). The I/O thread, asleep
        on its own timer, is not woken: the application calls again before `at` or its heartbeat does it."""
        self._service_at = min(self._service_at, at)

    def call(self, send: Callable[[], None]) -> None:
        """Run `send` (which sends through this loop) on this thread, then settle."""
        self._enter()
        send()
        if self._faulty:
            self.wake()  # the I/O thread releases what the injector held back, when it is due
        if self._watch_fd is not None:
            self.settle()

    def settle(self) -> None:
        """Receive (and service after, if the handler wants it) until ZMQ_EVENTS reports nothing queued:
        the last use of the socket before letting go of it when the I/O thread only watches ZMQ_FD."""
        after = self.handler.service_after_message
        while self._drain(MAX_BURST):
            if after:
                self._serve = True
                self._serve_if_due(time.monotonic())

    def _enter(self) -> None:
        if self._closed:
            self.check()
            raise ChannelClosed(f"{self.name}: closed")

    def _serve_if_due(self, now: float) -> None:
        if self._serve or now >= self._service_at:
            self._serve = False
            self._service_at = self.handler.service(now)
        if self._faulty:
            due = self.injector.release_due(self._raw_send, now)
            if due is not None:
                self._service_at = min(self._service_at, due)

    def _drain(self, limit: int = -1) -> bool:
        """Receive what is queued in the socket now (without waiting; at most `limit` messages if > 0);
        whether there was any."""
        socket, on_message, item, received = self.socket, self.handler.on_message, self._socket_item, False
        while limit and is_readable(item):  # ZMQ_EVENTS, read inside libzmq (see settle)
            on_message(recv_frames(socket))
            received, limit = True, limit - 1
        return received

    # --- the I/O thread ----------------------------------------------------------------------------------
    def _socket_owned(self) -> threading.Lock:
        return self.own

    def _close_all(self, linger_ms: int) -> None:
        self._closed = True
        super()._close_all(linger_ms)

    def _loop(self) -> None:
        if self._watch_fd is not None:
            self._watch_loop(self._watch_fd)
            return
        items, guard = self._wake_items(), self.guard
        while not self._stopping:
            if self.own.acquire(blocking=False):
                try:
                    self._drain()  # before service: a heartbeat must list every delivery that arrived
                    self._serve_if_due(time.monotonic())
                finally:
                    self.own.release()
                wait_s = self._service_at - time.monotonic()
            else:  # the application holds the socket and services when due; retry what it may not
                wait_s = _RETRY_S if self._serve else self._service_at - time.monotonic()
            for source, _ in zmq.zmq_poll(items, max(0, int(wait_s * 1000)) + 1):
                if guard is not None and source is guard.monitor:
                    guard.on_monitor()
                else:
                    self._drain_wake()

    def _watch_loop(self, fd: int) -> None:
        """Take the socket whenever ZMQ_FD, a wake() or a timer says so; the application holds it only
        for the length of a call, never while it waits, so blocking on `own` here is short."""
        items, guard = [(fd, zmq.POLLIN), *self._wake_items()], self.guard
        while not self._stopping:
            with self.own:
                if self._closed:
                    return
                self._serve_if_due(time.monotonic())
                self.settle()
            wait_s = self._service_at - time.monotonic()
            for source, _ in zmq.zmq_poll(items, max(0, int(wait_s * 1000)) + 1):
                if guard is not None and source is guard.monitor:
                    guard.on_monitor()
                elif source == self._wake_r:
                    self._drain_wake()
