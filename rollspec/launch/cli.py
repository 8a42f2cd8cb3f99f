"""The `rollspec` command line. Parses arguments, then imports the heavy parts it needs."""

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollspec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the installed version")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        from rollspec import __version__

        print(__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
