"""A graceful stop for `rollspec train`: the first SIGINT / SIGTERM asks the controller to stop after
the learner step in flight and checkpoint; a second one aborts at once.

Why: Ctrl-C, `kill`, `ray job stop` and batch schedulers all signal the driver, and without this the
steps since the last periodic checkpoint were lost. Ray's own SIGTERM handler (installed by
`ray.init`, it exits at once) is replaced only while the controller loop runs and restored after.
Ray's processes block SIGINT, so Ctrl-C reaches the driver only.
"""

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def write_stderr(text: str) -> None:
    """One line straight to file descriptor 2: safe inside a signal handler, unlike print or a rich console,
    whose buffered stream raises "reentrant call" when the signal lands while the main thread writes to it."""
    os.write(2, f"{text}\n".encode())


class StopRequest:
    """Set by the first stop signal; the controller polls `requested()` between learner calls."""

    def __init__(self):
        self.signal_name: str | None = None

    def requested(self) -> bool:
        return self.signal_name is not None


@contextlib.contextmanager
def graceful_stop(log: Callable[[str], None] = write_stderr) -> Iterator[StopRequest]:
    """Within the block the first SIGINT/SIGTERM sets the StopRequest; the second raises
    KeyboardInterrupt (SIGINT) or SystemExit(128 + signum) (SIGTERM), which unwinds the run's
    clean-up. Outside the main thread signals cannot be handled: the request then never fires.
    `log` runs inside the signal handler, so it must not write through a Python stream the main
    thread may be writing to (see write_stderr)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def on_signal(signum, frame):
        name = signal.Signals(signum).name
        if request.requested():
            log(f"{name} again: aborting without a final checkpoint")
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        request.signal_name = name
        log(f"{name}: stopping after the learner step in flight, then checkpointing (send it again to abort)")

    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, on_signal)
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
