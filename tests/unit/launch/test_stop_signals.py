"""graceful_stop: the first SIGINT/SIGTERM only asks, the second aborts, handlers come back after."""

import io
import os
import signal
import sys

import pytest

from rollspec.launch.stop_signals import graceful_stop


@pytest.mark.parametrize(("signum", "abort"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, SystemExit)])
def test_first_signal_requests_a_stop_and_the_second_aborts(signum, abort):
    before = signal.getsignal(signum)
    said = []
    with pytest.raises(abort) as raised, graceful_stop(said.append) as stop:
        assert not stop.requested()
        os.kill(os.getpid(), signum)
        assert stop.requested() and stop.signal_name == signum.name
        os.kill(os.getpid(), signum)
        pytest.fail("a second signal must abort")
    if abort is SystemExit:
        assert raised.value.code == 128 + signum
    assert len(said) == 2 and "stopping after" in said[0] and "aborting" in said[1]
    assert signal.getsignal(signum) == before


def test_the_previous_handlers_are_restored_after_a_clean_exit():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with graceful_stop(lambda message: None) as stop:
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
    assert not stop.requested()
    assert {s: signal.getsignal(s) for s in before} == before


class _ReentrancyProbe(io.TextIOBase):
    """A stream that sends the driver SIGTERM from inside its own write(), the way a signal lands while the
    progress console flushes stdout, and notes whether the handler wrote to it before that write returned."""

    def __init__(self):
        self.depth, self.reentered = 0, False

    def write(self, text):
        self.depth += 1
        self.reentered |= self.depth > 1
        try:
            if "trigger" in text:
                os.kill(os.getpid(), signal.SIGTERM)
            return len(text)
        finally:
            self.depth -= 1


def test_the_stop_notice_does_not_write_through_the_stream_the_signal_interrupted(monkeypatch, capfd):
    probe = _ReentrancyProbe()
    monkeypatch.setattr(sys, "stdout", probe)
    monkeypatch.setattr(sys, "stderr", probe)
    with graceful_stop() as stop:  # the notice train() prints
        print("trigger")
    assert stop.requested() and not probe.reentered
    assert "SIGTERM: stopping after" in capfd.readouterr().err
