"""Command-line entry points: `dbaasctl run`, `dbaasctl check`, `dbaasctl render`, `dbaasctl version`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dbaasctl import __version__


def _version(_: argparse.Namespace) -> int:
    print(f"dbaasctl {__version__}")
    return 0


def _render(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dbaasctl.render import RenderError, run

    try:
        run(
            Path(args.dbclass),
            Path(args.database),
            endpoint_name=args.endpoint_name,
            namespace=args.namespace,
            results=args.result,
        )
    except RenderError as exc:
        print(f"dbaasctl render: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_render(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    render = sub.add_parser(
        "render",
        help="show the inputs a DatabaseClass passes for a Database manifest (no DBMS call)",
        description="Render a DatabaseClass against a Database manifest: the exact inputs create, rotate and "
        "delete would receive (and the positional order for mysql/mariadb), as YAML. Nothing is called.",
    )
    render.add_argument(
        "-c", "--class", dest="dbclass", required=True, help="YAML file with the DatabaseClass"
    )
    render.add_argument("-d", "--database", required=True, help="YAML file with the Database")
    render.add_argument("--endpoint-name", help="endpoint name templates see (default: spec.endpoint)")
    render.add_argument(
        "-n", "--namespace", help="namespace to render with (default: the manifest's, else default)"
    )
    render.add_argument(
        "-r",
        "--result",
        action="append",
        metavar="KEY=VALUE",
        help="a key the create procedure would return; given at least once, the Secret is rendered too",
    )
    render.set_defaults(func=_render)


def _check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dbaasctl.check import main as check_main

    return check_main([Path(f) for f in args.file], sys.stdout, sys.stderr, timeout=args.timeout)


def _add_check(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = sub.add_parser(
        "check",
        help="verify each endpoint's procedures exist and take the parameters its class passes",
        description="Connect to every endpoint of the OperatorConfig and check, in the DBMS catalog, that each "
        "operation's procedure exists and takes the inputs its DatabaseClass passes (names for PostgreSQL "
        "and SQL Server, count for MySQL/MariaDB). Prints a table; exits 1 on any problem.",
    )
    check.add_argument(
        "-f",
        "--file",
        action="append",
        required=True,
        help="YAML with the OperatorConfig, DatabaseClasses and DSN Secrets (repeatable)",
    )
    check.add_argument("--timeout", type=float, default=30.0, help="seconds per DBMS round trip")
    check.set_defaults(func=_check)


def _run(args: argparse.Namespace) -> int:
    from dbaasctl.operator import main as run_operator

    return run_operator(args)


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from dbaasctl.settings import add_arguments

    run = sub.add_parser(
        "run",
        help="run the operator",
        description="Run the operator: reconcile Databases against the endpoints of the OperatorConfig. "
        "Every setting comes from a flag, else a DBAASCTL_* environment variable, else --config-file, "
        "else its default.",
    )
    add_arguments(run)
    run.set_defaults(func=_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dbaasctl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    version = sub.add_parser("version", help="print the version and exit")
    version.set_defaults(func=_version)
    _add_render(sub)
    _add_check(sub)
    _add_run(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
