"""`dbaasctl check`: load OperatorConfig, DatabaseClasses and DSN Secrets, verify the contract.

The objects come from YAML files, from the live cluster (`check_cluster`), or both (a file's object
replaces the live one of the same name, so a DBA can try a changed class against the real endpoints).
For every endpoint: connect (one ping), then ask the catalog whether each operation's procedure exists
and takes the inputs its class passes (`dbms.contract`). Prints one table; exit status 1 on any problem,
2 when the inputs cannot be read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml
from pydantic import ValidationError

from dbaasctl.api.databaseclass import DatabaseClass
from dbaasctl.api.operatorconfig import OperatorConfig
from dbaasctl.dbms.contract import OperationContract, verify
from dbaasctl.dbms.drivers import DbmsError, create_driver
from dbaasctl.dbms.dsn import Dsn, DsnError
from dbaasctl.dbms.dsn_parse import parse_dsn
from dbaasctl.redaction import redact

if TYPE_CHECKING:
    from dbaasctl.check_cluster import LiveSource


class CheckInputError(ValueError):
    """The files given to `dbaasctl check` are incomplete or invalid."""


@dataclass(frozen=True)
class Row:
    endpoint: str
    klass: str
    operation: str
    procedure: str
    ok: bool
    detail: str


@dataclass
class Inputs:
    configs: dict[str, OperatorConfig] = field(default_factory=dict)  # namespace/name -> config
    classes: dict[str, DatabaseClass] = field(default_factory=dict)
    secrets: dict[tuple[str, str], str] = field(default_factory=dict)  # (secret name, key) -> value
    #: Where each object came from ("kind/name" -> file or "the cluster"), to name both of a duplicate.
    origins: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def note(self, kind: str, name: str, origin: str) -> None:
        """Record an object's origin; a second definition from another file is a warning."""
        key = f"{kind}/{name}"
        before = self.origins.get(key)
        if before is not None and before != CLUSTER and origin != CLUSTER:
            where = "twice in " + origin if before == origin else f"in {before} and {origin}"
            self.warnings.append(f"{kind} {name} is defined {where}; the last one is used")
        self.origins[key] = origin

    def add(self, doc: dict[str, Any], origin: str) -> None:
        """One manifest (from a file or the cluster); other kinds are ignored."""
        kind = doc.get("kind")
        meta = doc.get("metadata") or {}
        name = str(meta.get("name", ""))
        try:
            if kind == "OperatorConfig":
                config = OperatorConfig.model_validate(doc)
                self.note(kind, f"{meta.get('namespace') or '-'}/{name}", origin)
                self.configs[f"{meta.get('namespace')}/{name}"] = config
            elif kind == "DatabaseClass":
                self.note(kind, name, origin)
                self.classes[name] = DatabaseClass.model_validate(doc)
            elif kind == "Secret":
                self.note(kind, name, origin)
                self._add_secret(name, doc, origin)
        except ValidationError as exc:
            # pydantic's text may quote input values (a DSN); keep only locations and messages.
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise CheckInputError(f"{origin}: invalid {kind} {name}: {redact(problems)}") from None

    def _add_secret(self, name: str, doc: dict[str, Any], origin: str) -> None:
        for key, value in (doc.get("stringData") or {}).items():
            self.secrets[(name, str(key))] = str(value)
        for key, value in (doc.get("data") or {}).items():
            try:
                self.secrets[(name, str(key))] = base64.b64decode(str(value), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise CheckInputError(
                    f"{origin}: Secret {name} key {key} is not valid base64 UTF-8"
                ) from None


#: The origin of objects read from the API server.
CLUSTER = "the cluster"


def load(paths: Iterable[Path], inputs: Inputs | None = None) -> Inputs:
    """Add the manifests of these files to `inputs` (or to new, empty inputs)."""
    inputs = inputs if inputs is not None else Inputs()
    for path in paths:
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise CheckInputError(f"{path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" (line {mark.line + 1})" if mark is not None else ""
            raise CheckInputError(f"{path}: not valid YAML{line}") from None
        for doc in docs:
            if isinstance(doc, dict):
                inputs.add(doc, str(path))
    if not inputs.configs:
        raise CheckInputError(
            "no OperatorConfig given (-f operatorconfig.yaml, or read one with --kubeconfig)"
        )
    return inputs


async def run_checks(inputs: Inputs, *, per_call: float = 30.0) -> list[Row]:
    rows: list[Row] = []
    for config in inputs.configs.values():
        for class_name, ep in config.spec.endpoints():
            rows += await _check_endpoint(inputs, class_name, ep.name, ep.dsn, ep.secret_key_ref, per_call)
    return rows


async def _check_endpoint(
    inputs: Inputs, class_name: str, endpoint: str, dsn_text: str | None, ref: Any, per_call: float
) -> list[Row]:
    def problem(detail: str, operation: str = "-", procedure: str = "-") -> list[Row]:
        return [Row(endpoint, class_name, operation, procedure, False, detail)]

    klass = inputs.classes.get(class_name)
    if klass is None:
        return problem(f"DatabaseClass {class_name!r} not given (-f its YAML) or it does not exist")
    if dsn_text is None:
        dsn_text = inputs.secrets.get((ref.name, ref.key)) if ref is not None else None
        if dsn_text is None:
            return problem(
                f"DSN Secret {ref.name} key {ref.key} not found (-f the Secret YAML, or --kubeconfig)"
            )
    try:
        dsn = parse_dsn(dsn_text)
        driver = create_driver(klass.spec.driver, dsn, max_connections=2, connect_timeout=min(10.0, per_call))
    except (DsnError, DbmsError) as exc:
        return problem(redact(str(exc)))
    contracts = []
    ops = klass.spec.operations
    for name, expect_rows in (("create", True), ("rotate", True), ("delete", False), ("retire", False)):
        op = ops.get(name)  # type: ignore[arg-type]
        if op is not None:
            contracts.append(OperationContract(name, op.name, tuple(op.inputs), expect_rows))
    try:
        try:
            await driver.ping(per_call)
        except DbmsError as exc:
            return problem(f"cannot reach the DBMS at {_where(dsn)}: {redact(exc.message, dsn.secrets())}")
        results = await verify(driver, contracts, timeout=per_call)
    finally:
        await driver.close()
    return [
        Row(endpoint, class_name, r.operation, r.procedure, r.ok, redact(r.detail, dsn.secrets()))
        for r in results
    ]


def _where(dsn: Dsn) -> str:
    """host:port of a DSN (never its credentials), for connection errors."""
    if not dsn.host:
        return "(host from the ODBC connection string)"
    host = f"[{dsn.host}]" if ":" in dsn.host else dsn.host
    return f"{host}:{dsn.port}" if dsn.port is not None else host


def render_table(rows: Sequence[Row], out: TextIO) -> None:
    header = ("ENDPOINT", "CLASS", "OPERATION", "PROCEDURE", "RESULT", "DETAIL")
    table = [header] + [
        (r.endpoint, r.klass, r.operation, r.procedure, "ok" if r.ok else "PROBLEM", r.detail) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")


def main(
    paths: Sequence[Path], out: TextIO, err: TextIO, *, timeout: float = 30.0, live: LiveSource | None = None
) -> int:
    """Exit status: 0 all good, 1 a problem found, 2 the inputs cannot be read."""
    try:
        inputs = Inputs()
        if live is not None:
            from dbaasctl.check_cluster import read_cluster

            asyncio.run(read_cluster(live, inputs))
        inputs = load(paths, inputs)
    except CheckInputError as exc:
        err.write(f"dbaasctl check: {exc}\n")
        return 2
    for warning in inputs.warnings:
        err.write(f"dbaasctl check: warning: {warning}\n")
    rows = asyncio.run(run_checks(inputs, per_call=timeout))
    render_table(rows, out)
    bad = [r for r in rows if not r.ok]
    if bad:
        err.write(f"dbaasctl check: {len(bad)} problem(s) found; see DETAIL above\n")
        return 1
    return 0
