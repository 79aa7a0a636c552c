"""`dbaasctl check`: load OperatorConfig, DatabaseClasses and DSN Secrets from YAML, verify the contract.

For every endpoint: connect (one ping), then ask the catalog whether each operation's procedure exists
and takes the inputs its class passes (`dbms.contract`). Prints one table; exit status 1 on any problem.
Reading the objects from a live cluster can come later; the files are what a DBA has at hand.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from dbaasctl.api.databaseclass import DatabaseClass
from dbaasctl.api.operatorconfig import OperatorConfig
from dbaasctl.dbms.contract import OperationContract, verify
from dbaasctl.dbms.drivers import DbmsError, create_driver
from dbaasctl.dbms.dsn import DsnError, parse_dsn
from dbaasctl.redaction import redact


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
    configs: list[OperatorConfig]
    classes: dict[str, DatabaseClass]
    secrets: dict[tuple[str, str], str]  # (secret name, key) -> value


def load(paths: Iterable[Path]) -> Inputs:
    inputs = Inputs(configs=[], classes={}, secrets={})
    for path in paths:
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as exc:
            raise CheckInputError(f"{path}: cannot read YAML: {exc.__class__.__name__}") from None
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            kind = doc.get("kind")
            try:
                if kind == "OperatorConfig":
                    inputs.configs.append(OperatorConfig.model_validate(doc))
                elif kind == "DatabaseClass":
                    klass = DatabaseClass.model_validate(doc)
                    inputs.classes[klass.metadata.name or ""] = klass
                elif kind == "Secret":
                    _add_secret(inputs, doc, path)
            except ValidationError as exc:
                # pydantic's text may quote input values (a DSN); keep only locations and messages.
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                raise CheckInputError(f"{path}: invalid {kind}: {redact(problems)}") from None
    if not inputs.configs:
        raise CheckInputError("no OperatorConfig given (-f operatorconfig.yaml)")
    return inputs


def _add_secret(inputs: Inputs, doc: dict[str, Any], path: Path) -> None:
    name = str((doc.get("metadata") or {}).get("name", ""))
    for key, value in (doc.get("stringData") or {}).items():
        inputs.secrets[(name, str(key))] = str(value)
    for key, value in (doc.get("data") or {}).items():
        try:
            inputs.secrets[(name, str(key))] = base64.b64decode(str(value), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise CheckInputError(f"{path}: Secret {name} key {key} is not valid base64 UTF-8") from None


async def run_checks(inputs: Inputs, *, per_call: float = 30.0) -> list[Row]:
    rows: list[Row] = []
    for config in inputs.configs:
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
            return problem(f"DSN Secret {ref.name}/{ref.key} not given (-f the Secret YAML)")
    try:
        dsn = parse_dsn(dsn_text)
        driver = create_driver(klass.spec.driver, dsn, max_connections=2, connect_timeout=min(10.0, per_call))
    except (DsnError, DbmsError) as exc:
        return problem(redact(str(exc)))
    contracts = []
    ops = klass.spec.operations
    for name, expect_rows in (("create", True), ("rotate", True), ("delete", False)):
        op = ops.get(name)  # type: ignore[arg-type]
        if op is not None:
            contracts.append(OperationContract(name, op.name, tuple(op.inputs), expect_rows))
    try:
        try:
            await driver.ping(per_call)
        except DbmsError as exc:
            return problem(f"cannot reach the DBMS: {redact(exc.message, dsn.secrets())}")
        results = await verify(driver, contracts, timeout=per_call)
    finally:
        await driver.close()
    return [
        Row(endpoint, class_name, r.operation, r.procedure, r.ok, redact(r.detail, dsn.secrets()))
        for r in results
    ]


def render_table(rows: Sequence[Row], out: TextIO) -> None:
    header = ("ENDPOINT", "CLASS", "OPERATION", "PROCEDURE", "RESULT", "DETAIL")
    table = [header] + [
        (r.endpoint, r.klass, r.operation, r.procedure, "ok" if r.ok else "PROBLEM", r.detail) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")


def main(paths: Sequence[Path], out: TextIO, err: TextIO, *, timeout: float = 30.0) -> int:
    try:
        inputs = load(paths)
    except CheckInputError as exc:
        err.write(f"dbaasctl check: {exc}\n")
        return 2
    rows = asyncio.run(run_checks(inputs, per_call=timeout))
    render_table(rows, out)
    bad = [r for r in rows if not r.ok]
    if bad:
        err.write(f"dbaasctl check: {len(bad)} problem(s) found; see DETAIL above\n")
        return 1
    return 0
