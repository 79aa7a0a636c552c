"""SQL Server through ODBC: `EXEC [schema].[proc] @k8sName = ?` — named, bound parameters.

Only the calling convention and the connection string differ from generic ODBC. `SET NOCOUNT ON` keeps
row-count messages of DML inside the procedure from posing as result sets. The DSN becomes a connection
string for Microsoft's "ODBC Driver 18 for SQL Server" unless `driver=` names another (FreeTDS gets its
own SERVER/PORT spelling); ODBC options such as `Encrypt` and `TrustServerCertificate` pass through.
Written to the same contract as the other drivers; not exercised against a real SQL Server here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from dbaasctl.dbms.drivers.base import (
    ContractError,
    masks_inputs,
)
from dbaasctl.dbms.drivers.marshal import (
    PROCEDURE_NAME,
    named_values,
    split_procedure,
)
from dbaasctl.dbms.drivers.odbc import MAX_IDENTIFIER, Dialect, OdbcDriver, odbc_value
from dbaasctl.dbms.dsn import Dsn

DEFAULT_ODBC_DRIVER = "ODBC Driver 18 for SQL Server"
_OPTION_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9 _-]{0,63}$")
_RESERVED = {"driver", "server", "port", "database", "uid", "pwd", "user", "password"}


def connection_string(dsn: Dsn) -> str:
    """ODBC connection string for a `sqlserver://user:pass@host:port/db?opt=...` DSN."""
    if dsn.odbc:
        return dsn.odbc
    options = {k: v for k, v in dsn.options.items()}
    driver = options.pop("driver", None) or options.pop("Driver", None) or DEFAULT_ODBC_DRIVER
    host = dsn.host or "localhost"
    port = dsn.port or 1433
    parts = [f"DRIVER={odbc_value(driver)}"]
    if "freetds" in driver.lower():
        parts += [f"SERVER={odbc_value(host)}", f"PORT={port}"]
        options.setdefault("TDS_Version", "7.4")
    else:
        parts.append(f"SERVER={odbc_value(f'tcp:{host},{port}')}")
    if dsn.database:
        parts.append(f"DATABASE={odbc_value(dsn.database)}")
    if dsn.user:
        parts.append(f"UID={odbc_value(dsn.user)}")
    if dsn.password:
        parts.append(f"PWD={odbc_value(dsn.password)}")
    for key, value in sorted(options.items()):
        if not _OPTION_KEY.fullmatch(key) or key.lower() in _RESERVED:
            raise ContractError(f"DSN option {key!r} is not a valid ODBC connection attribute name")
        parts.append(f"{key}={odbc_value(value)}")
    return ";".join(parts) + ";"


class SqlServerDriver(OdbcDriver):
    kind = "sqlserver"
    binding = "named"

    def __init__(self, dsn: Dsn, *, max_connections: int = 10, connect_timeout: float = 10.0) -> None:
        super().__init__(
            connection_string(dsn),
            secrets=dsn.secrets(),
            max_connections=max_connections,
            connect_timeout=connect_timeout,
        )

    def statement(self, dialect: Dialect, procedure: str, inputs: Mapping[str, str]) -> tuple[str, list[str]]:
        schema, bare = split_procedure(procedure, max_length=MAX_IDENTIFIER)
        params = named_values(inputs, procedure=procedure, max_length=MAX_IDENTIFIER)
        target = Dialect("Microsoft SQL Server", "[").target(schema, bare)
        args = ", ".join(f"@{name} = ?" for name, _ in params)
        return f"SET NOCOUNT ON; EXEC {target} {args}".rstrip(), [value for _, value in params]

    @masks_inputs
    async def call(
        self, procedure: str, inputs: Mapping[str, str], *, timeout: float, expect_rows: bool
    ) -> dict[str, str]:
        # Named parameters are validated up front too (named_values raises ContractError).
        if PROCEDURE_NAME.fullmatch(procedure):
            named_values(inputs, procedure=procedure, max_length=MAX_IDENTIFIER)
        return await super().call(procedure, inputs, timeout=timeout, expect_rows=expect_rows)
