"""Real PostgreSQL and MariaDB servers for tests, `make demo` and benchmarks, plus unixODBC wiring.

Each server is Debian's own binary run in the foreground from a private temp dir on 127.0.0.1 and a free
port (never the system service), supervised by `testbed.process.Service` (mirakuru underneath, which also
kills leftovers at interpreter exit). pytest-postgresql's executor does not fit: it daemonises through
`pg_ctl` (a stop that fails leaves an orphan), cannot drop root (PostgreSQL refuses to run as root and CI
runs as root) and pulls psycopg in for a version probe. pytest-mysql targets MySQL's init flow, not
`mariadb-install-db`. So both servers are started directly: as root they run under the distribution's
service account through `setpriv`, which execs in place, so the supervised pid is the server itself.

`restart()` keeps the port and the data: the "DBMS down, then back" tests depend on it.

`tls=True` starts a server with TLS on, its certificate signed by a throw-away CA made for it
(`testbed.pki.generate_server`); `server.tls.ca_cert` is what a verifying client trusts.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import port_for

from testbed.pki import ServerPki, generate_server
from testbed.process import Service

_LIVE: weakref.WeakSet[_Server] = weakref.WeakSet()


@atexit.register
def _cleanup_at_exit() -> None:
    """Last resort when a caller forgot `close()` or the run was interrupted."""
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", path))


def postgres_bindir() -> Path:
    """The newest Debian PostgreSQL installed (`/usr/lib/postgresql/<major>/bin`), or `pg_config --bindir`."""
    override = os.environ.get("DBAASCTL_PG_BINDIR")
    if override:
        return Path(override)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version_key)
    if found:
        return Path(found[-1]).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], check=True, capture_output=True, text=True)
        return Path(out.stdout.strip())
    raise FileNotFoundError("PostgreSQL server binaries not found (install Debian's `postgresql` package)")


def _which(*names: str) -> str:
    for name in names:
        path = shutil.which(name) or next(
            (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
        )
        if path:
            return path
    raise FileNotFoundError(f"none of {names} found (install Debian's `mariadb-server` package)")


def _run_as(account: str) -> tuple[list[str], pwd.struct_passwd | None]:
    """Command prefix dropping root privileges; servers refuse root (or should not have it)."""
    if os.geteuid() != 0:
        return [], None
    try:
        entry = pwd.getpwnam(account)
    except KeyError:
        entry = pwd.getpwnam("nobody")
    prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--"]
    return prefix, entry


def _chown_tree(path: Path, entry: pwd.struct_passwd | None) -> None:
    if entry is None:
        return
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _free_port() -> int:
    return int(port_for.select_random())


def _password() -> str:
    # URL-safe on purpose: the DSN still quotes it, but shell-free tooling stays simple.
    return secrets.token_urlsafe(24)


class _Server:
    """Shared lifecycle: a temp dir, a port, a generated admin password, one supervised process."""

    kind = "dbms"
    account = "nobody"
    stop_signal = signal.SIGTERM

    def __init__(self, *, admin_user: str = "admin", port: int | None = None, tls: bool = False) -> None:
        self.host = "127.0.0.1"
        self.port = port or _free_port()
        self.admin_user = admin_user
        self.admin_password = _password()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"dbaasctl-{self.kind}-"))
        self._prefix, self._account = _run_as(self.account)
        self._initialised = False
        self._service: Service | None = None
        self._closed = False
        _LIVE.add(self)
        self.tls: ServerPki | None = generate_server(self.workdir / "tls", self.kind) if tls else None

    # lifecycle -------------------------------------------------------------------------------------
    def _initialise(self) -> None:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _after_first_start(self) -> None:
        """Hook for one-off work once the server accepts connections."""

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.kind}.log"

    def running(self) -> bool:
        return self._service is not None and self._service.running()

    def start(self) -> Self:
        if self._closed:
            raise RuntimeError(f"{self.kind} server was closed")
        if self.running():
            return self
        first = not self._initialised
        if first:
            self._initialise()
            self._initialised = True
        self._service = Service(
            self.kind,
            [*self._prefix, *self._command()],
            self.log_path,
            self._ready,
            start_timeout=120,
            stop_timeout=30,
            env={"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
            cwd=self.workdir,
        )
        self._service.start()
        if first:
            self._after_first_start()
        return self

    def stop(self) -> Self:
        """Stop the server (clients are disconnected); data and port are kept for `start()`."""
        if self._service is not None:
            self._service.stop(sig=self.stop_signal)
            self._service = None
        return self

    def kill(self) -> Self:
        """SIGKILL, as a crash would; `start()` brings it back through crash recovery."""
        if self._service is not None:
            self._service.kill()
            self._service = None
        return self

    def restart(self) -> Self:
        return self.stop().start()

    def close(self) -> None:
        """Stop and delete everything; idempotent."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            shutil.rmtree(self.workdir, ignore_errors=True)
            _LIVE.discard(self)

    @property
    def pid(self) -> int | None:
        return self._service.pid if self._service else None

    def log_tail(self, lines: int = 50) -> str:
        return self._service.tail(lines) if self._service else ""

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class PostgresServer(_Server):
    """PostgreSQL from Debian's packages; admin is the bootstrap superuser (SCRAM password auth)."""

    kind = "postgres"
    account = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients instead of waiting for them.
    stop_signal = signal.SIGINT

    def __init__(
        self,
        *,
        admin_user: str = "admin",
        port: int | None = None,
        log_statements: bool = False,
        settings: dict[str, str] | None = None,
        tls: bool = False,
    ) -> None:
        super().__init__(admin_user=admin_user, port=port, tls=tls)
        self.bindir = postgres_bindir()
        self.datadir = self.workdir / "data"
        self.log_statements = log_statements
        self.settings = dict(settings or {})

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str, user: str | None = None, password: str | None = None) -> str:
        user = user or self.admin_user
        password = self.admin_password if password is None else password
        return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}/{database}"

    def _initialise(self) -> None:
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.admin_password + "\n", encoding="utf-8")
        pwfile.chmod(0o600)
        _chown_tree(self.workdir, self._account)
        try:
            subprocess.run(
                [
                    *self._prefix,
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    self.admin_user,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                text=True,
                cwd=self.workdir,
                env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
                timeout=180,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr}") from exc
        finally:
            pwfile.unlink(missing_ok=True)

    def _command(self) -> list[str]:
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.workdir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "logging_collector": "off",
            "log_destination": "stderr",
            "log_statement": "all" if self.log_statements else "none",
            **self.settings,
        }
        if self.tls is not None:
            settings |= {"ssl": "on", "ssl_cert_file": str(self.tls.cert), "ssl_key_file": str(self.tls.key)}
        cmd = [str(self.bindir / "postgres"), "-D", str(self.datadir)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    def _ready(self) -> bool:
        probe = subprocess.run(
            [str(self.bindir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port), "-t", "2"],
            check=False,
            capture_output=True,
        )
        return probe.returncode == 0

    def psql(
        self,
        sql: str | None = None,
        *,
        file: Path | None = None,
        database: str = "postgres",
        variables: dict[str, str] | None = None,
    ) -> str:
        """Run SQL like a DBA would (psql, stop on the first error); returns psql's stdout."""
        if (sql is None) == (file is None):
            raise ValueError("give exactly one of sql or file")
        cmd = [
            str(self.bindir / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            self.admin_user,
            "-d",
            database,
            "-At",
        ]
        for name, value in (variables or {}).items():
            cmd += ["-v", f"{name}={value}"]
        cmd += ["-c", sql] if sql is not None else ["-f", str(file)]
        env = {**os.environ, "PGPASSWORD": self.admin_password, "PGCONNECT_TIMEOUT": "10"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def create_database(self, name: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"test database name must be a plain identifier: {name!r}")
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip()
        if not exists:
            self.psql(f"CREATE DATABASE {name}")
        return name

    def odbc_connection_string(self, database: str = "postgres", driver: str = "PostgreSQL Unicode") -> str:
        return (
            f"DRIVER={{{driver}}};SERVER={self.host};PORT={self.port};DATABASE={database};"
            f"UID={self.admin_user};PWD={{{self.admin_password}}};"
        )


class MariaDBServer(_Server):
    """MariaDB from Debian's packages; admin@127.0.0.1 (and @localhost) with ALL PRIVILEGES."""

    kind = "mariadb"
    account = "mysql"

    def __init__(
        self,
        *,
        admin_user: str = "admin",
        port: int | None = None,
        general_log: bool = False,
        tls: bool = False,
    ) -> None:
        super().__init__(admin_user=admin_user, port=port, tls=tls)
        self.datadir = self.workdir / "data"
        self.socket = self.workdir / "mysqld.sock"
        self.general_log = general_log
        self.mariadbd = _which("mariadbd", "mysqld")
        self.install_db = _which("mariadb-install-db", "mysql_install_db")
        self.client = _which("mariadb", "mysql")
        self._init_file = self.workdir / "init.sql"

    @property
    def dsn(self) -> str:
        return self.dsn_for("mysql")

    def dsn_for(self, database: str, user: str | None = None, password: str | None = None) -> str:
        user = user or self.admin_user
        password = self.admin_password if password is None else password
        return f"mysql://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}/{database}"

    def _initialise(self) -> None:
        _chown_tree(self.workdir, self._account)
        cmd = [
            *self._prefix,
            self.install_db,
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            "--skip-name-resolve",
        ]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=self.workdir, timeout=300)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"mariadb-install-db failed: {exc.stdout}\n{exc.stderr}") from exc
        # The admin account is created by the server itself at first start (--init-file), then the file
        # holding the password is deleted.
        pw = self.admin_password.replace("\\", "\\\\").replace("'", "\\'")
        hostname = socket.gethostname().replace("'", "")
        statements = [
            f"CREATE USER IF NOT EXISTS '{self.admin_user}'@'{h}' IDENTIFIED BY '{pw}';\n"
            f"GRANT ALL PRIVILEGES ON *.* TO '{self.admin_user}'@'{h}' WITH GRANT OPTION;\n"
            for h in ("127.0.0.1", "localhost")
        ]
        statements.append(f"DROP USER IF EXISTS ''@'localhost', ''@'{hostname}';\n")
        self._init_file.write_text("".join(statements), encoding="utf-8")
        self._init_file.chmod(0o600)
        _chown_tree(self.workdir, self._account)
        client_cnf = self.workdir / "client.cnf"
        client_cnf.write_text(
            f"[client]\nuser={self.admin_user}\npassword={self.admin_password}\n"
            f"host={self.host}\nport={self.port}\nprotocol=TCP\n",
            encoding="utf-8",
        )
        client_cnf.chmod(0o600)

    def _command(self) -> list[str]:
        cmd = [
            self.mariadbd,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            f"--socket={self.socket}",
            f"--pid-file={self.workdir / 'mysqld.pid'}",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=64M",
            "--innodb-flush-log-at-trx-commit=0",
            "--max-connections=300",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
        ]
        if self._init_file.exists():
            cmd.append(f"--init-file={self._init_file}")
        if self.general_log:
            cmd += ["--general-log=1", f"--general-log-file={self.workdir / 'general.log'}"]
        if self.tls is not None:
            cmd += [
                f"--ssl-ca={self.tls.ca_cert}",
                f"--ssl-cert={self.tls.cert}",
                f"--ssl-key={self.tls.key}",
            ]
        else:
            cmd.append("--skip-ssl")
        return cmd

    def _ready(self) -> bool:
        import pymysql  # PyMySQL comes with aiomysql

        conn = pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.admin_user,
            password=self.admin_password,
            connect_timeout=2,
        )
        conn.close()
        return True

    def _after_first_start(self) -> None:
        self._init_file.unlink(missing_ok=True)

    def sql(self, sql: str | None = None, *, file: Path | None = None, database: str | None = None) -> str:
        """Run SQL with the `mariadb` client (so DELIMITER works, as for a DBA); returns its stdout."""
        if (sql is None) == (file is None):
            raise ValueError("give exactly one of sql or file")
        cmd = [
            self.client,
            f"--defaults-file={self.workdir / 'client.cnf'}",
            "--batch",
            "--skip-column-names",
        ]
        if database:
            cmd.append(f"--database={database}")
        stdin = sql if sql is not None else Path(file).read_text(encoding="utf-8")  # type: ignore[arg-type]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"mariadb client failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def create_database(self, name: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"test database name must be a plain identifier: {name!r}")
        self.sql(f"CREATE DATABASE IF NOT EXISTS `{name}`")
        return name

    def odbc_connection_string(self, database: str = "mysql", driver: str = "MariaDB Unicode") -> str:
        return (
            f"DRIVER={{{driver}}};SERVER={self.host};PORT={self.port};DATABASE={database};"
            f"UID={self.admin_user};PWD={{{self.admin_password}}};"
        )


# ODBC ----------------------------------------------------------------------------------------------

POSTGRES_ODBC = "PostgreSQL Unicode"
MARIADB_ODBC = "MariaDB Unicode"


def _find_library(*patterns: str) -> Path:
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[0])
    raise FileNotFoundError(f"ODBC driver library not found: {patterns}")


@dataclass(frozen=True)
class OdbcDrivers:
    """unixODBC configured from a private `odbcinst.ini` (`ODBCSYSINI` points at its directory)."""

    sysini: Path
    postgres: str = POSTGRES_ODBC
    mariadb: str = MARIADB_ODBC


def configure_odbc(directory: Path, *, set_env: bool = True) -> OdbcDrivers:
    """Register Debian's psqlODBC and MariaDB Connector/ODBC in `directory/odbcinst.ini`.

    unixODBC reads `$ODBCSYSINI/odbcinst.ini` when a connection is made, so setting the variable in this
    process (before the first connect) is enough; the system-wide file is neither read nor changed.
    """
    psql = _find_library(
        "/usr/lib/*/odbc/psqlodbcw.so", "/usr/lib/odbc/psqlodbcw.so", "/usr/lib*/psqlodbcw.so"
    )
    maria = _find_library(
        "/usr/lib/*/odbc/libmaodbc.so", "/usr/lib/*/libmaodbc.so", "/usr/lib/odbc/libmaodbc.so"
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "odbcinst.ini").write_text(
        f"[{POSTGRES_ODBC}]\nDescription=PostgreSQL ODBC driver (Unicode)\nDriver={psql}\nUsageCount=1\n\n"
        f"[{MARIADB_ODBC}]\nDescription=MariaDB Connector/ODBC (Unicode)\nDriver={maria}\nUsageCount=1\n",
        encoding="utf-8",
    )
    (directory / "odbc.ini").write_text("", encoding="utf-8")
    if set_env:
        os.environ["ODBCSYSINI"] = str(directory)
        os.environ["ODBCINI"] = str(directory / "odbc.ini")
    return OdbcDrivers(sysini=directory)
