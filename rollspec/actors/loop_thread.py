"""The background thread every data-plane actor runs its loop in.

Ray calls an actor's methods (status, stop, save_draft) on its own thread, so the loop that moves
items runs beside them; an exception ends the loop and is kept as a traceback, which status()
reports and the controller fails the run with.
"""

import threading
import traceback
from collections.abc import Callable


class LoopThread:
    """Calls `step()` over and over in a daemon thread until `stop()`."""

    def __init__(self, step: Callable[[], None], name: str):
        self.error = ""
        self._running = True
        self._thread = threading.Thread(target=self._run, args=(step,), name=name, daemon=True)
        self._thread.start()

    def _run(self, step: Callable[[], None]) -> None:
        try:
            while self._running:
                step()
        except Exception:  # reported through status(); the controller fails the run with the traceback
            self.error = traceback.format_exc()

    def stop(self, timeout_s: float) -> None:
        """Ask the loop to end after its current step and wait up to timeout_s for it."""
        self._running = False
        self._thread.join(timeout=timeout_s)
