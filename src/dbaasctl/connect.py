"""Opening an API client for a command, with a one-line error instead of a traceback.

A missing, unreadable or malformed kubeconfig is the user's mistake, not the program's: every command
that talks to a cluster (`run`, `check --kubeconfig`) turns it into `KubeconfigError` with the path and
the reason, and exits 2.
"""

from __future__ import annotations

import os
import sys

from dbaasctl.kube.rest import KubeClient


class KubeconfigError(Exception):
    """The cluster credentials cannot be loaded; the message is meant for the user."""


def _yaml_error(exc: BaseException) -> bool:
    # PyYAML is imported only by a reader that parses a file, so an exception can only be one of its
    # errors once it is loaded; an in-cluster process never loads it.
    yaml = sys.modules.get("yaml")
    return yaml is not None and isinstance(exc, yaml.YAMLError)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    if _yaml_error(exc):
        import yaml  # already loaded: the error is one of its

        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
            return f"not valid YAML (line {exc.problem_mark.line + 1}): {exc.problem}"
        return "not valid YAML"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _is_loader_error(exc: BaseException) -> bool:
    # kubernetes-asyncio's ConfigException is not imported here: importing its package loads every
    # generated API model (tens of MB) that the operator otherwise never needs.
    return type(exc).__module__.startswith("kubernetes_asyncio.config")


async def open_client(kubeconfig: str | None, *, context: str | None = None) -> KubeClient:
    """`KubeClient.from_config`, with configuration mistakes raised as KubeconfigError."""
    where = kubeconfig or os.environ.get("KUBECONFIG") or "the default kubeconfig / in-cluster config"
    try:
        return await KubeClient.from_config(kubeconfig, context=context)
    except Exception as exc:
        if isinstance(exc, OSError | ValueError) or _yaml_error(exc) or _is_loader_error(exc):
            raise KubeconfigError(f"cannot load kubeconfig {where}: {_reason(exc)}") from None
        raise
