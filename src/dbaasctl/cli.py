"""Command-line entry points: `dbaasctl run`, `dbaasctl check`, `dbaasctl render`, `dbaasctl version`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dbaasctl import __version__


def _version(_: argparse.Namespace) -> int:
    print(f"dbaasctl {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dbaasctl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    version = sub.add_parser("version", help="print the version and exit")
    version.set_defaults(func=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
