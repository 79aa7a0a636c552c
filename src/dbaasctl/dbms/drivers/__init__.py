"""DBMS drivers behind one protocol (`base.Driver`); `create_driver` picks one for a class and a DSN."""

from __future__ import annotations

from dbaasctl.dbms.drivers.base import (
    ContractError,
    DbmsError,
    Driver,
    ParameterInfo,
    PoolStats,
    ProcedureError,
    Reason,
    RoutineInfo,
)
from dbaasctl.dbms.dsn import Dsn, ensure_compatible

__all__ = [
    "DRIVER_KINDS",
    "ContractError",
    "DbmsError",
    "Driver",
    "ParameterInfo",
    "PoolStats",
    "ProcedureError",
    "Reason",
    "RoutineInfo",
    "create_driver",
]

#: DatabaseClass `driver` values.
DRIVER_KINDS = ("postgres", "mysql", "mariadb", "sqlserver", "odbc")


def create_driver(kind: str, dsn: Dsn, *, max_connections: int = 10, connect_timeout: float = 10.0) -> Driver:
    """A driver for a class's `driver` and an endpoint's parsed DSN; no connection is opened yet."""
    ensure_compatible(dsn, kind)  # DsnError naming both sides when the DSN cannot serve the class
    if kind == "postgres":
        from dbaasctl.dbms.drivers.postgres import PostgresDriver

        return PostgresDriver(dsn, max_connections=max_connections, connect_timeout=connect_timeout)
    if kind in ("mysql", "mariadb"):
        from dbaasctl.dbms.drivers.mysql import MySQLDriver

        return MySQLDriver(dsn, max_connections=max_connections, connect_timeout=connect_timeout)
    if kind == "sqlserver":
        from dbaasctl.dbms.drivers.sqlserver import SqlServerDriver

        return SqlServerDriver(dsn, max_connections=max_connections, connect_timeout=connect_timeout)
    from dbaasctl.dbms.drivers.odbc import OdbcDriver

    if not dsn.odbc:
        raise ContractError("the odbc driver needs an odbc: DSN carrying a connection string")
    return OdbcDriver(
        dsn.odbc,
        secrets=dsn.secrets(),
        max_connections=max_connections,
        connect_timeout=connect_timeout,
    )
