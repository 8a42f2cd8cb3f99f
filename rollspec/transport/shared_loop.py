"""An I/O loop whose socket the application thread drives itself while it is inside a call.

With a plain IoLoop each delivery costs the consumer process two extra thread wake-ups: the I/O thread
receives it and wakes the application, and the application's ack wakes the I/O thread to send it. Here
whoever holds `own` owns the socket (zmq sockets are not thread-safe): the application takes it inside
get_batch (polls, receives, services) and to send its acks; the I/O thread never polls the socket, it
only wakes on its timers and on wake(), takes the socket if it is free, drains what arrived and
services (heartbeats, ack resends). So a consumer whose application stops calling keeps heartbeating
and reporting what it holds, and one whose application is waiting in get_batch needs no other thread.
"""

import threading
import time
from typing import Any

import zmq

from rollspec.transport.errors import ChannelClosed
from rollspec.transport.io_loop import IoLoop

_MAX_PUMP_S = 0.2  # the longest the application holds the socket in one poll: bounds a wake()'s delay
_RETRY_S = 0.005    # the I/O thread's retry when the application held the socket as service was asked for


class SharedIoLoop(IoLoop):
    """IoLoop for an endpoint whose application thread receives and sends itself (see module doc).
    Every use of the socket (and of the fault injector) happens with `own` held."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.own = threading.Lock()
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
        """Run a service pass now (sends queued acks)."""
        self._enter()
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

    def _drain(self) -> bool:
        """Receive every message queued in the socket now (without waiting); whether there was any."""
        socket, on_message, received = self.socket, self.handler.on_message, False
        while socket.get(zmq.EVENTS) & zmq.POLLIN:
            on_message(socket.recv_multipart(flags=zmq.NOBLOCK, copy=False))
            received = True
        return received

    # --- the I/O thread ----------------------------------------------------------------------------------
    def _socket_owned(self) -> threading.Lock:
        return self.own

    def _close_all(self, linger_ms: int) -> None:
        self._closed = True
        super()._close_all(linger_ms)

    def _loop(self) -> None:
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
