"""`dbaasctl render`: the DBA's dry run of a DatabaseClass against a Database manifest.

Shows exactly what each procedure would receive, through the same code the operator runs
(param resolution, Go-style translation, the sandbox), without touching a DBMS or a cluster.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from dbaasctl.api.database import Database
from dbaasctl.api.databaseclass import (
    POSITIONAL_DRIVERS,
    DatabaseClass,
    DatabaseClassSpec,
    OperationName,
    ParameterError,
)
from dbaasctl.controller.binding import MissingResultKey, binding_data
from dbaasctl.templates import (
    TemplateContext,
    TemplateError,
    render_inputs,
    render_secret,
    template_references,
)

__all__ = ["PLACEHOLDER_UID", "RenderError", "load_manifest", "render_report", "run"]

#: Manifests on disk have no uid; templates that use one see this instead.
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
_OPERATIONS: tuple[OperationName, ...] = ("create", "rotate", "delete", "retire")


class RenderError(Exception):
    """The manifests cannot be rendered; the message says why and is meant for the DBA."""


class RenderInputError(RenderError):
    """A file cannot be read or holds no usable manifest, or an argument is malformed: the DBA's
    input, not the class, is wrong (exit status 2, like every other input error of the CLI)."""


def load_manifest(path: Path, kind: str) -> dict[str, Any]:
    """The one document of `kind` in a YAML file (which may hold several documents)."""
    try:
        with path.open(encoding="utf-8") as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    except OSError as exc:
        raise RenderInputError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise RenderInputError(f"{path}: not valid YAML: {exc}") from None
    matching = [d for d in docs if isinstance(d, dict) and d.get("kind") == kind]
    if not matching:
        raise RenderInputError(f"{path}: no {kind} document found")
    if len(matching) > 1:
        raise RenderInputError(f"{path}: {len(matching)} {kind} documents found; keep one per file")
    return matching[0]


def _validation_message(kind: str, exc: ValidationError) -> str:
    lines = [f"invalid {kind}:"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def render_report(
    dbclass: DatabaseClass,
    db: Database,
    *,
    endpoint_name: str | None = None,
    result: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What each operation would pass, as a plain dict ready for YAML.

    Raises RenderError (params refused by the class, a template failing) with the same
    messages the operator would put in the Database's status.
    """
    spec = dbclass.spec
    notes: list[str] = []
    try:
        params = spec.resolve_params(db.spec.params)
    except ParameterError as exc:
        raise RenderError(f"params: {exc}") from None
    ctx = TemplateContext.from_database(db, params=params, endpoint_name=endpoint_name)

    operations: dict[str, Any] = {}
    for op_name in _OPERATIONS:
        op = spec.operations.get(op_name)
        if op is None:
            if op_name != "retire":  # optional: without it a rotation is a cut-over
                notes.append(f"the class has no {op_name} operation")
            continue
        try:
            context = ctx.for_operation(op_name, db.status.credential_generation or 0)
            inputs = render_inputs(op.inputs, context.with_previous(_previous_placeholder(spec)))
        except TemplateError as exc:
            raise RenderError(f"operations.{op_name}: {exc}") from None
        entry: dict[str, Any] = {"procedure": op.name, "inputs": inputs}
        if spec.driver in POSITIONAL_DRIVERS:
            entry["positional"] = [inputs[str(i)] for i in range(len(inputs))]
        operations[op_name] = entry

    secret: dict[str, Any]
    if spec.secret_format:
        needed = sorted(
            {key for fmt in spec.secret_format.values() for root, key in _refs(fmt) if root == "result"}
        )
        secret = {"resultKeys": needed}
    else:
        secret = {
            "layout": "Service Binding (the class has no secretFormat)",
            "resultKeys": ["password", "username"],
        }
    if result is not None:
        secret["data"] = _secret_data(spec, ctx, result)
    else:
        notes.append("pass --result KEY=VALUE (repeatable) to render the Secret too")

    report: dict[str, Any] = {
        "databaseClass": dbclass.metadata.name,
        "driver": spec.driver,
        "database": f"{db.metadata.namespace}/{db.metadata.name}",
        "endpoint": ctx.endpoint["name"],
        "params": params,
        "operations": operations,
        "secretFormat": secret,
    }
    if notes:
        report["notes"] = notes
    return report


def _previous_placeholder(spec: DatabaseClassSpec) -> dict[str, str]:
    """What `previous` shows when rendering offline: each Secret key, as a placeholder."""
    keys = spec.secret_format or {"username": "", "password": "", "database": "", "host": "", "uri": ""}
    return {key: f"<previous {key}>" for key in keys}


def _secret_data(spec: DatabaseClassSpec, ctx: TemplateContext, result: Mapping[str, str]) -> dict[str, str]:
    """The Secret exactly as the operator builds it (host and port from the DSN are not known here)."""
    if spec.secret_format:
        try:
            return render_secret(spec.secret_format, ctx.with_result(result))
        except TemplateError as exc:
            raise RenderError(str(exc)) from None
    try:
        return binding_data(result, driver=spec.driver)
    except MissingResultKey as exc:
        raise RenderError(f"secret: {exc}") from None


def _refs(text: str) -> frozenset[tuple[str, str]]:
    try:
        return template_references(text)
    except TemplateError as exc:
        raise RenderError(f"secretFormat: {exc}") from None


def _parse_results(pairs: Sequence[str] | None) -> dict[str, str] | None:
    if pairs is None:
        return None
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise RenderInputError(f"--result expects KEY=VALUE, got {pair!r}")
        result[key] = value
    return result


def run(
    class_path: Path,
    database_path: Path,
    *,
    endpoint_name: str | None = None,
    namespace: str | None = None,
    results: Sequence[str] | None = None,
    out: TextIO | None = None,
) -> None:
    """Load both manifests, render, print YAML. Raises RenderError for anything the DBA must fix."""
    raw_class = load_manifest(class_path, "DatabaseClass")
    raw_db = load_manifest(database_path, "Database")
    try:
        dbclass = DatabaseClass.model_validate(raw_class)
    except ValidationError as exc:
        raise RenderError(_validation_message(f"DatabaseClass in {class_path}", exc)) from None
    try:
        db = Database.model_validate(raw_db)
    except ValidationError as exc:
        raise RenderError(_validation_message(f"Database in {database_path}", exc)) from None
    notes: list[str] = []
    if namespace is not None:
        db.metadata.namespace = namespace
    elif not db.metadata.namespace:
        db.metadata.namespace = "default"
        notes.append(
            "the Database manifest has no namespace; rendered as namespace 'default' (see --namespace)"
        )
    if not db.metadata.uid:
        db.metadata.uid = PLACEHOLDER_UID
        notes.append(f"metadata.uid is assigned by the API server; rendered as {PLACEHOLDER_UID}")
    report = render_report(dbclass, db, endpoint_name=endpoint_name, result=_parse_results(results))
    if notes:
        report["notes"] = notes + report.get("notes", [])
    yaml.safe_dump(
        report,
        out or sys.stdout,
        sort_keys=False,
        allow_unicode=True,
        width=2**31 - 1,
        default_flow_style=False,
    )
