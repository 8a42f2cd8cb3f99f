"""The shared --reps / --quick / --out command line of the message-level benchmarks."""

import json

from bench.reps_cli import run_and_record


def _run(reps: int, quick: bool) -> dict:
    return {"reps": reps, "quick": quick}


def test_out_writes_there_and_leaves_the_result_alone(tmp_path):
    result, out = tmp_path / "results" / "transport.json", tmp_path / "scratch" / "mine.json"
    got = run_and_record("doc", _run, result, reps_help="reps", argv=["--reps", "2", "--out", str(out)])
    assert got == {"reps": 2, "quick": False}
    assert json.loads(out.read_text()) == got
    assert not result.exists()


def test_full_run_writes_the_result_and_quick_writes_nothing(tmp_path):
    result = tmp_path / "transport.json"
    run_and_record("doc", _run, result, reps_help="reps", argv=["--quick"])
    assert not result.exists()
    run_and_record("doc", _run, result, reps_help="reps", argv=[])
    assert json.loads(result.read_text()) == {"reps": 3, "quick": False}


def test_quick_with_out_writes_out(tmp_path):
    out = tmp_path / "quick.json"
    run_and_record("doc", _run, tmp_path / "transport.json", reps_help="reps", argv=["--quick", "--out", str(out)])
    assert json.loads(out.read_text())["quick"] is True
