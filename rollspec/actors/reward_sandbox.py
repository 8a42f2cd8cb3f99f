"""Runs a user reward function in a child process with a per-call timeout.

A thread cannot be stopped in Python, so a reward function that hangs would hold its thread
forever; a child process can be killed. The child is started once and reused (import cost is
paid once), killed and restarted lazily after a timeout or a crash.

Protocol: one JSON line per request on the child's stdin, one per answer on a private copy of its
stdout; the child points fd 1 at stderr first, so whatever the user function prints (Python or C)
cannot corrupt the protocol.
"""

import json
import os
import select
import subprocess
import sys
import time

from rollspec.actors.reward_fn import RewardFunctionError, RewardOutcome, checked_value, load_reward_function

START_TIMEOUT_S = 120.0


class SandboxedRewardFunction:
    """Callable `(prompt, response) -> RewardOutcome` running `import_path` in a killable child.

    Raises RewardFunctionError at construction if the child cannot import the function; after
    that, every failure (exception, timeout, crash, non-number) is an outcome with an error.
    """

    def __init__(self, import_path: str, *, timeout_s: float):
        if not timeout_s > 0:
            raise ValueError(f"reward timeout_s must be > 0, got {timeout_s!r}")
        self.import_path = import_path
        self.timeout_s = timeout_s
        self.num_restarts = 0
        self._proc: subprocess.Popen | None = None
        self._start()

    def __call__(self, prompt: str, response: str) -> RewardOutcome:
        """Score one response; never raises on anything the user function does."""
        if self._proc is None or self._proc.poll() is not None:
            self.num_restarts += 1
            self._start()
        line = json.dumps({"prompt": prompt, "response": response}) + "\n"
        try:
            self._proc.stdin.write(line.encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._kill()
            return RewardOutcome(0.0, "reward worker process died before the call")
        answer = self._read_line(self.timeout_s)
        if answer is None:
            self._kill()
            return RewardOutcome(0.0, f"timed out after {self.timeout_s}s")
        if not answer:
            self._kill()
            return RewardOutcome(0.0, "reward worker process died during the call")
        reply = json.loads(answer)
        if "error" in reply:
            return RewardOutcome(0.0, reply["error"])
        return RewardOutcome(float(reply["value"]), "")

    def close(self) -> None:
        """Stop the child (closing its stdin ends it; it is killed if it does not exit promptly)."""
        if self._proc is None:
            return
        try:
            self._proc.stdin.close()
            self._proc.wait(timeout=2.0)
        except (OSError, subprocess.TimeoutExpired):
            self._kill()
        self._proc = None

    def _start(self) -> None:
        env = dict(os.environ)
        # The user module must import in the child exactly as it would here.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self._proc = subprocess.Popen([sys.executable, "-m", "rollspec.actors.reward_sandbox", self.import_path],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        hello = self._read_line(START_TIMEOUT_S)
        reply = json.loads(hello) if hello else {"error": "worker exited before importing the function"}
        if "error" in reply:
            self._kill()
            raise RewardFunctionError(self.import_path, reply["error"])

    def _read_line(self, timeout_s: float) -> bytes | None:
        """One line from the child; None on timeout, b'' if it exited."""
        stdout = self._proc.stdout
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([stdout], [], [], remaining)
            if ready:
                return stdout.readline()

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


def _serve(import_path: str) -> None:
    """Child side: import the function, then answer requests until stdin closes."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        fn = load_reward_function(import_path)
    except RewardFunctionError as exc:
        protocol.write(json.dumps({"error": exc.detail}) + "\n")
        return
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        try:
            outcome = checked_value(fn(request["prompt"], request["response"]))
        except Exception as exc:  # user code: every failure is reported to the parent as a reward error
            outcome = RewardOutcome(0.0, f"raised {type(exc).__name__}: {str(exc)[:200]}")
        reply = {"value": outcome.value} if outcome.ok else {"error": outcome.error}
        protocol.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    _serve(sys.argv[1])
