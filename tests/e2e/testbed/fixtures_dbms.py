"""pytest fixtures over `testbed.dbms`: one PostgreSQL and one MariaDB per run, unixODBC configured.

Session-scoped servers are shared; a test that stops or kills a server must use the `fresh_*` fixtures
(function-scoped, own process) so other tests never see the disruption.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testbed.dbms import MariaDBServer, OdbcDrivers, PostgresServer, configure_odbc
from testbed.leakscan import SUITE

REPO = Path(__file__).resolve().parents[3]
SAMPLES = REPO / "deploy" / "samples"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        SUITE.add(server.admin_password, "postgres admin password")
        yield server


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    with MariaDBServer() as server:
        SUITE.add(server.admin_password, "mariadb admin password")
        yield server


@pytest.fixture
def fresh_postgres() -> Iterator[PostgresServer]:
    """A private server for tests that stop, kill or reconfigure it."""
    with PostgresServer() as server:
        SUITE.add(server.admin_password, "postgres admin password")
        yield server


@pytest.fixture
def fresh_mariadb() -> Iterator[MariaDBServer]:
    with MariaDBServer() as server:
        SUITE.add(server.admin_password, "mariadb admin password")
        yield server


@pytest.fixture(scope="session")
def odbc_drivers(tmp_path_factory: pytest.TempPathFactory) -> OdbcDrivers:
    return configure_odbc(tmp_path_factory.mktemp("odbc"))


@pytest.fixture
def load_postgres_sql(postgres: PostgresServer) -> Callable[..., None]:
    """`load(path_or_sample, database="postgres")`: run a SQL file with psql, creating the database."""

    def load(path: str | Path, database: str = "postgres") -> None:
        postgres.create_database(database)
        postgres.psql(file=_resolve(path), database=database)

    return load


@pytest.fixture
def load_mariadb_sql(mariadb: MariaDBServer) -> Callable[..., None]:
    """`load(path_or_sample, database="dbaas")`: run a SQL file with the mariadb client."""

    def load(path: str | Path, database: str = "dbaas") -> None:
        mariadb.create_database(database)
        mariadb.sql(file=_resolve(path), database=database)

    return load


def _resolve(path: str | Path) -> Path:
    """Absolute paths as given; relative ones under deploy/samples (e.g. "test/postgres.sql")."""
    p = Path(path)
    return p if p.is_absolute() else SAMPLES / p
