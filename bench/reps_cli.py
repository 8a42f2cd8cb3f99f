"""The command line the message-level benchmarks share (transport, security, large_frames):
`--reps N` interleaved repetitions and `--quick` for a smoke run, which never overwrites the result."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path


def run_and_record(doc: str, run: Callable[[int, bool], dict], result: Path, *, reps_help: str) -> dict:
    """Parse --reps / --quick, call run(reps, quick), write a full run's output to `result` as JSON
    (values JSON cannot hold written as strings) and print its summary; returns the output."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help=reps_help)
    parser.add_argument("--quick", action="store_true", help="fewer messages; does not overwrite the result file")
    args = parser.parse_args()
    out = run(args.reps, args.quick)
    if not args.quick:
        result.parent.mkdir(parents=True, exist_ok=True)
        result.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return out
