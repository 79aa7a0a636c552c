"""Command-line entry points: `dbaasctl run`, `check`, `render`, `migrate-config`, `version`.

User mistakes (a missing file, a bad kubeconfig, a closed pipe) end in one line on stderr and a non-zero
exit status, never in a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from dbaasctl import __version__
from dbaasctl.connect import KubeconfigError


def _version(_: argparse.Namespace) -> int:
    print(f"dbaasctl {__version__}")
    return 0


def _render(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dbaasctl.render import RenderError, RenderInputError, run

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
        return 2 if isinstance(exc, RenderInputError) else 1
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
    from dbaasctl.check_cluster import DEFAULT_NAMESPACE, LiveSource

    files = [Path(f) for f in args.file or []]
    live = None
    if not files or args.kubeconfig or args.context:
        live = LiveSource(
            kubeconfig=args.kubeconfig,
            context=args.context,
            namespace=args.namespace or DEFAULT_NAMESPACE,
            config_name=args.config_name,
        )
    return check_main(files, sys.stdout, sys.stderr, timeout=args.timeout, live=live)


def _add_check(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = sub.add_parser(
        "check",
        help="verify each endpoint's procedures exist and take the parameters its class passes",
        description="Connect to every endpoint of the OperatorConfig and check, in the DBMS catalog, that each "
        "operation's procedure exists and takes the inputs its DatabaseClass passes (names for PostgreSQL "
        "and SQL Server, count for MySQL/MariaDB). Prints a table. "
        "Without -f, the OperatorConfig, the DatabaseClasses and the DSN Secrets are read from the cluster "
        "(--kubeconfig, else $KUBECONFIG, the in-cluster service account or ~/.kube/config); with -f, from "
        "the files; with both, a file's object replaces the live one of the same name.",
        epilog="Exit status: 0 every check passed; 1 problems found (see the table); "
        "2 input errors (unreadable file or kubeconfig, no OperatorConfig, access refused).",
    )
    check.add_argument(
        "-f",
        "--file",
        action="append",
        help="YAML with OperatorConfigs, DatabaseClasses and DSN Secrets (repeatable)",
    )
    check.add_argument("--kubeconfig", metavar="PATH", help="read the objects from this cluster")
    check.add_argument("--context", help="kubeconfig context to use")
    check.add_argument(
        "-n",
        "--namespace",
        help="the operator's namespace, where its OperatorConfig and DSN Secrets live (default: dbaasctl-system)",
    )
    check.add_argument(
        "--config-name",
        metavar="NAME",
        help="the OperatorConfig to check (default: every one in the namespace)",
    )
    check.add_argument("--timeout", type=float, default=30.0, help="seconds per DBMS round trip")
    check.set_defaults(func=_check)


def _migrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dbaasctl.migrate import MigrationError, run

    try:
        run(Path(args.file), sys.stdout, name=args.name, namespace=args.namespace)
    except MigrationError as exc:
        print(f"dbaasctl migrate-config: {exc}", file=sys.stderr)
        return 2
    return 0


def _add_migrate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    migrate = sub.add_parser(
        "migrate-config",
        help="turn a kubernetes-dbaas config file into an OperatorConfig and `dbaasctl run` flags",
        description="Read the reference operator's config file (bare, wrapped in an OperatorConfig, or in "
        "its Helm ConfigMap) and print, for kubectl apply, an OperatorConfig with its endpoints (inline "
        "DSNs moved into a Secret), preceded by comments with the `dbaasctl run` flags that replace "
        "health, metrics and leaderElection, and what was dropped (webhook, ...) and why.",
        epilog="Exit status: 0 printed; 2 the file cannot be read or migrated.",
    )
    migrate.add_argument("file", metavar="FILE", help="the kubernetes-dbaas operator config YAML")
    migrate.add_argument("--name", default="dbaasctl", help="name of the OperatorConfig (default: dbaasctl)")
    migrate.add_argument(
        "-n",
        "--namespace",
        default="dbaasctl-system",
        help="the operator's namespace (default: dbaasctl-system)",
    )
    migrate.set_defaults(func=_migrate)


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


DESCRIPTION = "Kubernetes Database-as-a-Service operator, and the DBA's tools to try a DatabaseClass."
EPILOG = (
    "Exit status: 0 success; 1 a problem was found (check: a procedure or endpoint; render: the class "
    "cannot be rendered); 2 usage or input errors (unreadable file, bad kubeconfig). "
    "`dbaasctl COMMAND --help` for each command's options."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dbaasctl", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"dbaasctl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    version = sub.add_parser("version", help="print the version and exit")
    version.set_defaults(func=_version)
    _add_render(sub)
    _add_check(sub)
    _add_migrate(sub)
    _add_run(sub)
    return parser


#: 128 + SIGPIPE: what a shell reports for a command whose reader went away (`... | head`).
BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader has what it wanted; stay silent like other Unix tools, and keep the interpreter
        # from failing again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE
    except KubeconfigError as exc:
        print(f"dbaasctl {args.command}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
