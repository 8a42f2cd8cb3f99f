"""The command line the message-level benchmarks share (transport, security, large_frames):
`--reps N` interleaved repetitions, `--quick` for a smoke run, which never overwrites the result, and
`--out PATH` to write the result somewhere else (a scratch run beside the committed one)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path


def parse_args(doc: str, result: Path, *, reps_help: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """--reps / --quick / --out; `out` is the path to write (None: a quick run without --out writes nothing)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help=reps_help)
    parser.add_argument("--quick", action="store_true",
                        help="fewer messages; writes nothing unless --out is given")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"write the result JSON here (default {result}, only for a full run)")
    args = parser.parse_args(argv)
    if args.out is None and not args.quick:
        args.out = result
    return args


def run_and_record(doc: str, run: Callable[[int, bool], dict], result: Path, *, reps_help: str,
                   argv: Sequence[str] | None = None) -> dict:
    """Parse the arguments, call run(reps, quick) and write its output as JSON (values JSON cannot hold
    written as strings) to --out, or to `result` for a full run; returns the output."""
    args = parse_args(doc, result, reps_help=reps_help, argv=argv)
    out = run(args.reps, args.quick)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return out
