"""The invariants every reliability scenario (and benchmark) ends with, checked on both sides.

Kubernetes side (read with kubectl, as a user would): every Database is Ready with a Secret whose
credentials log in, or not Ready with a specific reason; no Secret labelled as ours without its Database;
no finalizer left on a deleted Database without a visible reason; every operator alive with /healthz green.

DBMS side (read on the server, never from the operator's own account of what it did): the server holds
exactly one database and one login per Ready Database and none for Databases that are gone; create ran at
most once per Database after its success was recorded. Calls are counted by the audit wrappers in
tests/e2e/data/audit-*.sql, which record each completed call in a table on the server.

`InvariantChecker.check()` returns every violation at once (a fault rarely breaks just one thing) plus
the figures the reliability report quotes; `assert_holds()` fails with all of them listed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import pymysql

from dbaasctl.controller import reasons as catalogue
from testbed.controlplane import KubeTools
from testbed.dbms import MariaDBServer, PostgresServer
from testbed.intents import count_intents
from testbed.operator import OperatorProcess

__all__ = [
    "AUDIT_MARIADB",
    "AUDIT_POSTGRES",
    "Call",
    "CheckReport",
    "InvariantChecker",
    "MariaDBView",
    "PostgresView",
    "ServerView",
    "Violation",
]

DATA = Path(__file__).resolve().parents[1] / "data"
AUDIT_POSTGRES = DATA / "audit-postgres.sql"
AUDIT_MARIADB = DATA / "audit-mariadb.sql"
MANAGED_BY = "app.kubernetes.io/managed-by"
DATABASE_LABEL = "dbaasctl.io/database"
FINALIZER = "dbaasctl.io/finalizer"
#: Reasons a Ready=False condition may carry: the controller's stable vocabulary, nothing vaguer.
SPECIFIC_REASONS = frozenset(r.name for r in catalogue.CATALOGUE) - {catalogue.PROVISIONED, catalogue.ROTATED}
#: provisionedAt has one-second precision and is stamped after the call returned: a create that *started*
#: more than this after it started after the success was recorded.
PROVISIONED_SLACK = 1.0


@dataclass(frozen=True)
class Call:
    """One completed procedure call, as the server recorded it."""

    id: int
    op: str  # create | rotate | delete
    namespace: str
    name: str
    started_at: float  # epoch seconds, server clock (the same host as the operator)
    payload: str | None = None
    #: The procedure recognised the call's idempotency key as one that already took effect: it answered
    #: the first call's result and changed nothing.
    replayed: bool = False


@dataclass(frozen=True)
class Violation:
    invariant: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.subject}: {self.detail}"


@dataclass
class CheckReport:
    violations: list[Violation] = field(default_factory=list)
    databases: int = 0
    ready: int = 0
    not_ready: dict[str, str] = field(default_factory=dict)  # ns/name -> reason
    logins_verified: int = 0
    server_databases: int = 0
    creates: int = 0
    #: Create calls beyond the first per Database name that reached the server (whole history): re-runs
    #: after a fault hit a create whose success was not recorded yet (allowed: procedures are idempotent).
    create_retries: int = 0
    rotates: int = 0
    deletes: int = 0
    #: Intents judged exactly-once (see testbed.intents) and the calls beyond them.
    intents: int = 0
    repeats: int = 0
    #: Repeated calls the procedures recognised by their idempotency key (no side effect; not repeats).
    replays: int = 0
    #: Committed calls per judged Database and operation (exactly-once checks only).
    calls: dict[str, dict[str, int]] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        return {
            "databases": self.databases,
            "ready": self.ready,
            "not_ready": len(self.not_ready),
            "logins_verified": self.logins_verified,
            "server_databases": self.server_databases,
            "creates": self.creates,
            "create_retries": self.create_retries,
            "rotates": self.rotates,
            "deletes": self.deletes,
            "intents": self.intents,
            "replays": self.replays,
            "repeats": self.repeats,
            "violations": len(self.violations),
        }


class ServerView(Protocol):
    """What the checker reads from one DBMS endpoint, on the server itself."""

    kind: str

    def ident(self, namespace: str, name: str) -> str: ...

    def databases(self) -> set[str]: ...

    def logins(self) -> set[str]: ...

    def calls(self) -> list[Call]: ...

    def attempts(self) -> list[Call]: ...

    def issued_passwords(self) -> set[str]: ...

    def can_login_all(self, creds: Sequence[Mapping[str, str]]) -> list[bool | str]: ...


def _sample_prefix(name: str) -> str:
    """The readable part of the sample procedures' identifiers: lower(name), runs of [^a-z0-9] as _, 30."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower())[:30]


class PostgresView:
    """The sample procedures + audit wrappers installed in one database of a PostgreSQL test server."""

    kind = "postgres"

    def __init__(self, server: PostgresServer, database: str = "dbaas", *, audited: bool = True) -> None:
        self.server = server
        self.database = database
        #: False for a server with the plain samples (no audit wrappers): call counts are then skipped.
        self.audited = audited

    def install(self) -> str:
        """Load the sample functions and the audit wrappers; returns the operator's DSN."""
        self.server.create_database(self.database)
        samples = Path(__file__).resolve().parents[3] / "deploy" / "samples"
        self.server.psql(
            file=samples / "postgres" / "procedures.sql",
            database=self.database,
            variables={
                "loopback_user": self.server.admin_user,
                "loopback_password": self.server.admin_password,
            },
        )
        self.server.psql(file=AUDIT_POSTGRES, database=self.database)
        return self.server.dsn_for(self.database)

    def sql(self, statement: str) -> list[list[str]]:
        out = self.server.psql(statement, database=self.database)
        return [line.split("|") for line in out.splitlines() if line]

    def fetch(self, query: str, *args: object) -> list[tuple[Any, ...]]:
        """Rows exactly as the server holds them (psql's text output would mangle newlines)."""

        async def go() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(dsn=self.server.dsn_for(self.database), timeout=15)
            try:
                return [tuple(r) for r in await conn.fetch(query, *args)]
            finally:
                await conn.close()

        return asyncio.run(go())

    def ident(self, namespace: str, name: str) -> str:
        digest = hashlib.md5(f"{namespace}/{name}".encode()).hexdigest()[:16]
        return f"d_{_sample_prefix(name)}_{digest}"

    def databases(self) -> set[str]:
        return {r[0] for r in self.sql(r"SELECT datname FROM pg_database WHERE datname LIKE 'd\_%'")}

    def logins(self) -> set[str]:
        return {r[0] for r in self.sql(r"SELECT rolname FROM pg_roles WHERE rolname LIKE 'd\_%'")}

    def calls(self) -> list[Call]:
        if not self.audited:
            return []
        rows = self.sql(
            "SELECT json_build_object('id', id, 'op', op, 'ns', namespace, 'name', name, "
            "'t', extract(epoch FROM started_at), 'payload', payload, 'replayed', replayed) "
            "FROM audit.calls ORDER BY id"
        )
        out = []
        for row in rows:
            doc = json.loads("|".join(row))
            out.append(
                Call(
                    int(doc["id"]),
                    doc["op"],
                    doc["ns"],
                    doc["name"],
                    float(doc["t"]),
                    doc["payload"],
                    bool(doc["replayed"]),
                )
            )
        return out

    def attempts(self) -> list[Call]:
        """Creates that reached the server, committed or not (recorded through an autonomous dblink)."""
        if not self.audited:
            return []
        rows = self.sql(
            "SELECT id, op, namespace, name, extract(epoch FROM started_at) FROM audit.attempts ORDER BY id"
        )
        return [Call(int(r[0]), r[1], r[2], r[3], float(r[4])) for r in rows]

    def issued_passwords(self) -> set[str]:
        if not self.audited:
            return set()
        return {r[0] for r in self.sql("SELECT issued FROM audit.calls WHERE issued IS NOT NULL")}

    def can_login_all(self, creds: Sequence[Mapping[str, str]]) -> list[bool | str]:
        async def one(c: Mapping[str, str]) -> bool | str:
            try:
                conn = await asyncpg.connect(
                    host=c.get("host") or self.server.host,
                    port=int(c.get("port") or self.server.port),
                    user=c["username"],
                    password=c["password"],
                    database=c["database"],
                    timeout=15,
                )
            except asyncpg.InvalidPasswordError:
                return False
            except Exception as exc:
                return f"{type(exc).__name__}"
            try:
                return int(await conn.fetchval("SELECT 1")) == 1
            finally:
                await conn.close()

        async def every() -> list[bool | str]:
            sem = asyncio.Semaphore(8)

            async def bounded(c: Mapping[str, str]) -> bool | str:
                async with sem:
                    return await one(c)

            return list(await asyncio.gather(*(bounded(c) for c in creds)))

        return asyncio.run(every()) if creds else []


class MariaDBView:
    """The sample procedures + audit wrappers installed in one database of a MariaDB test server."""

    kind = "mariadb"

    def __init__(self, server: MariaDBServer, database: str = "dbaas", *, audited: bool = True) -> None:
        self.server = server
        self.database = database
        self.audited = audited

    def install(self) -> str:
        samples = Path(__file__).resolve().parents[3] / "deploy" / "samples"
        self.server.create_database(self.database)
        self.server.sql(file=samples / "mariadb" / "procedures.sql", database=self.database)
        self.server.sql(file=AUDIT_MARIADB, database=self.database)
        # The sample reports @@hostname; applications here reach the server on loopback.
        self.server.sql(
            "INSERT INTO dbaas_settings VALUES ('host', '127.0.0.1') "
            "ON DUPLICATE KEY UPDATE value = VALUES(value)",
            database=self.database,
        )
        return self.server.dsn_for(self.database)

    def sql(self, statement: str) -> list[list[str]]:
        out = self.server.sql(statement, database=self.database)
        return [line.split("\t") for line in out.splitlines() if line]

    def ident(self, namespace: str, name: str) -> str:
        digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:16]
        return f"d_{_sample_prefix(name)}_{digest}"

    def databases(self) -> set[str]:
        return {
            r[0]
            for r in self.sql(
                r"SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'd\_%'"
            )
        }

    def logins(self) -> set[str]:
        return {r[0] for r in self.sql(r"SELECT User FROM mysql.user WHERE User LIKE 'd\_%'")}

    def calls(self) -> list[Call]:
        if not self.audited:
            return []
        rows = self.sql(
            "SELECT id, op, namespace, name, UNIX_TIMESTAMP(started_at), replayed FROM audit_calls ORDER BY id"
        )
        return [Call(int(r[0]), r[1], r[2], r[3], float(r[4]), replayed=str(r[5]) == "1") for r in rows]

    def attempts(self) -> list[Call]:
        return [c for c in self.calls() if c.op == "create"]  # MariaDB has no autonomous transaction

    def issued_passwords(self) -> set[str]:
        return set()  # the wrapper cannot see the row set the sample sends to the client

    def can_login_all(self, creds: Sequence[Mapping[str, str]]) -> list[bool | str]:
        out: list[bool | str] = []
        for c in creds:
            try:
                conn = pymysql.connect(
                    host=c.get("host") or self.server.host,
                    port=int(c.get("port") or self.server.port),
                    user=c["username"],
                    password=c["password"],
                    database=c["database"],
                    connect_timeout=15,
                )
            except pymysql.err.OperationalError as exc:
                out.append(False if exc.args and exc.args[0] == 1045 else f"OperationalError {exc.args[0]}")
                continue
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    out.append(cur.fetchone() == (1,))
            finally:
                conn.close()
        return out


def database_label(name: str) -> str:
    """The `dbaasctl.io/database` label value for a Database name (label values stop at 63 characters)."""
    return name if len(name) <= 63 else name[:54] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]


def short_tail(op: OperatorProcess, lines: int = 15, width: int = 300) -> str:
    """The end of an operator's log for a failure message, long lines (tracebacks) cut."""
    return "\n".join(line[:width] for line in op.tail(lines).splitlines())


def _ready(db: Mapping[str, Any]) -> tuple[str, str, str] | None:
    for cond in (db.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status")), str(cond.get("reason")), str(cond.get("message", ""))
    return None


def _epoch(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _decoded(secret: Mapping[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (secret.get("data") or {}).items()}


class InvariantChecker:
    """Checks one scenario's world: its namespaces, its endpoints (each a server view), its operators."""

    def __init__(
        self,
        kube: KubeTools,
        namespaces: Iterable[str],
        views: Mapping[str, ServerView],
        operators: Iterable[OperatorProcess] = (),
        *,
        scope: Iterable[str] | None = None,
    ) -> None:
        """`scope` ("ns/name" keys) restricts every check to those Databases, their Secrets, their server
        objects and their calls: a scenario is judged on its own while earlier ones share the servers."""
        self.kube = kube
        self.scope = frozenset(scope) if scope is not None else None
        self.namespaces = list(namespaces)
        self.views = dict(views)  # endpoint name -> the server behind it
        self.operators = list(operators)
        #: Every password seen in a Secret by any check: the leak scan's Kubernetes-side source.
        self.seen_passwords: set[str] = set()

    # -- reading -------------------------------------------------------------------------------------

    def _list(self, kind: str, namespace: str, *selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kube.kubectl_json("get", kind, "-n", namespace, *selector)["items"]
        return items

    def _in_scope(self, namespace: str, name: str) -> bool:
        return self.scope is None or f"{namespace}/{name}" in self.scope

    def databases(self) -> list[dict[str, Any]]:
        return [
            db
            for ns in self.namespaces
            for db in self._list("databases", ns)
            if self._in_scope(ns, db["metadata"]["name"])
        ]

    def owned_secrets(self) -> list[dict[str, Any]]:
        found = [
            s for ns in self.namespaces for s in self._list("secrets", ns, "-l", f"{MANAGED_BY}=dbaasctl")
        ]
        if self.scope is None:
            return found
        labels = {(key.split("/", 1)[0], database_label(key.split("/", 1)[1])) for key in self.scope}
        return [
            s
            for s in found
            if (s["metadata"]["namespace"], (s["metadata"].get("labels") or {}).get(DATABASE_LABEL)) in labels
        ]

    # -- the check ------------------------------------------------------------------------------------

    def check(
        self,
        *,
        expected_not_ready: Mapping[str, str] | None = None,
        require_ready: bool = True,
        exact_creates: bool = False,
        exactly_once: bool = False,
        expected_calls: Mapping[str, Mapping[str, int]] | None = None,
        repeats_allowed: Iterable[str] = (),
    ) -> CheckReport:
        """Evaluate every invariant once.

        `expected_not_ready` maps "ns/name" to the reason a deliberately broken Database must show;
        with `require_ready` every other Database must be Ready. `exact_creates` demands exactly one
        create per Database (scenarios whose faults cannot hit a create between call and record).
        `exactly_once` judges every intent by its committed calls on the server (testbed.intents), and
        `expected_calls` ("ns/name" -> {"create": 1, "rotate": 2, "delete": 1}) names exact counts.
        `repeats_allowed` names operations whose repeats are counted but not violations: only for faults
        that leave the operator unable to know whether a call ran (the DBMS's answer never arrived).
        """
        expected = dict(expected_not_ready or {})
        report = CheckReport()
        dbs = self.databases()
        secrets = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in self.owned_secrets()}
        by_key = {f"{d['metadata']['namespace']}/{d['metadata']['name']}": d for d in dbs}
        report.databases = len(dbs)
        to_login: dict[str, list[tuple[str, dict[str, str]]]] = {}
        for key, db in sorted(by_key.items()):
            self._check_database(key, db, secrets, expected, require_ready, report, to_login)
        for key, wanted in expected.items():
            if key not in by_key:
                report.violations.append(
                    Violation("expected", key, f"expected Ready=False {wanted}, but it is gone")
                )
        self._check_logins(to_login, report)
        self._check_secret_owners(secrets, by_key, report)
        self._check_servers(by_key, report, exact_creates)
        if exactly_once or expected_calls:
            self._check_intents(by_key, report, expected_calls or {}, frozenset(repeats_allowed))
        self._check_operators(report)
        return report

    def assert_holds(self, **kwargs: Any) -> CheckReport:
        report = self.check(**kwargs)
        if report.violations:
            shown = "\n".join(f"  {v}" for v in report.violations[:40])
            more = len(report.violations) - 40
            raise AssertionError(
                f"{len(report.violations)} invariant violation(s):\n{shown}"
                + (f"\n  ... and {more} more" if more > 0 else "")
                + self._tails()
            )
        return report

    def _tails(self) -> str:
        return "".join(f"\noperator {i} log tail:\n{short_tail(op)}" for i, op in enumerate(self.operators))

    def _check_database(
        self,
        key: str,
        db: dict[str, Any],
        secrets: Mapping[tuple[str, str], dict[str, Any]],
        expected: Mapping[str, str],
        require_ready: bool,
        report: CheckReport,
        to_login: dict[str, list[tuple[str, dict[str, str]]]],
    ) -> None:
        meta = db["metadata"]
        ready = _ready(db)
        if meta.get("deletionTimestamp"):
            if FINALIZER in (meta.get("finalizers") or []) and (
                ready is None or ready[1] != catalogue.DELETE_FAILED
            ):
                report.violations.append(
                    Violation(
                        "finalizer", key, f"deleting with our finalizer but no visible reason ({ready})"
                    )
                )
            elif key not in expected:
                report.violations.append(
                    Violation("finalizer", key, "still deleting at the end of the scenario")
                )
            return
        if ready is None:
            report.violations.append(Violation("ready", key, "no Ready condition"))
            return
        status = db.get("status") or {}
        if status.get("observedGeneration") != meta.get("generation"):
            report.violations.append(
                Violation(
                    "ready",
                    key,
                    f"observedGeneration {status.get('observedGeneration')} "
                    f"!= generation {meta.get('generation')}",
                )
            )
        if key in expected:
            if ready[0] == "True" or ready[1] != expected[key]:
                report.violations.append(
                    Violation(
                        "expected", key, f"expected Ready=False {expected[key]}, got {ready[0]} {ready[1]}"
                    )
                )
            report.not_ready[key] = ready[1]
            return
        if ready[0] != "True":
            report.not_ready[key] = ready[1]
            if require_ready:
                report.violations.append(Violation("ready", key, f"not Ready: {ready[1]}: {ready[2][:300]}"))
            elif ready[1] not in SPECIFIC_REASONS:
                report.violations.append(
                    Violation("ready", key, f"not Ready without a specific reason: {ready[1]!r}")
                )
            return
        report.ready += 1
        secret_name = status.get("secretName") or f"{meta['name']}-credentials"
        secret = secrets.get((meta["namespace"], secret_name))
        if secret is None:
            report.violations.append(Violation("secret", key, f"Ready but Secret {secret_name} is missing"))
            return
        owners = [
            o.get("uid") for o in secret["metadata"].get("ownerReferences") or [] if o.get("controller")
        ]
        if owners != [meta.get("uid")]:
            report.violations.append(
                Violation("secret", key, f"Secret {secret_name} is not controlled by it")
            )
        creds = _decoded(secret)
        if creds.get("password"):
            self.seen_passwords.add(creds["password"])
        endpoint = status.get("endpoint") or db["spec"]["endpoint"]
        if endpoint in self.views:
            to_login.setdefault(endpoint, []).append((key, creds))

    def _check_logins(
        self, to_login: Mapping[str, list[tuple[str, dict[str, str]]]], report: CheckReport
    ) -> None:
        for endpoint, entries in to_login.items():
            missing = [k for k, c in entries if not {"username", "password", "database"} <= c.keys()]
            for key in missing:
                report.violations.append(Violation("login", key, "Secret lacks username/password/database"))
            usable = [(k, c) for k, c in entries if k not in missing]
            results = self.views[endpoint].can_login_all([c for _, c in usable])
            for (key, _), ok in zip(usable, results, strict=True):
                if ok is True:
                    report.logins_verified += 1
                else:
                    report.violations.append(
                        Violation("login", key, f"the Secret's credentials do not log in: {ok}")
                    )

    def _check_secret_owners(
        self,
        secrets: Mapping[tuple[str, str], dict[str, Any]],
        by_key: Mapping[str, dict[str, Any]],
        report: CheckReport,
    ) -> None:
        """Every Secret labelled as ours belongs to a live Database (by controller ownerReference, uid
        included) and carries that Database's label (names over 63 characters are shortened + hashed)."""
        for (ns, name), secret in sorted(secrets.items()):
            meta = secret["metadata"]
            owners = [
                o
                for o in meta.get("ownerReferences") or []
                if o.get("kind") == "Database" and o.get("controller")
            ]
            db = by_key.get(f"{ns}/{owners[0]['name']}") if owners else None
            if db is None or db["metadata"].get("uid") != owners[0].get("uid"):
                report.violations.append(
                    Violation("secret", f"{ns}/{name}", "labelled as ours but its Database is gone")
                )
                continue
            label = (meta.get("labels") or {}).get(DATABASE_LABEL)
            if label != database_label(db["metadata"]["name"]):
                report.violations.append(
                    Violation(
                        "secret", f"{ns}/{name}", f"label {DATABASE_LABEL}={label!r} names another Database"
                    )
                )

    def _check_servers(self, by_key: Mapping[str, dict[str, Any]], report: CheckReport, exact: bool) -> None:
        groups: dict[int, list[str]] = {}  # several endpoints may share one server: check it once
        for endpoint, view in self.views.items():
            groups.setdefault(id(view), []).append(endpoint)
        for endpoints in groups.values():
            view = self.views[endpoints[0]]
            must: dict[str, str] = {}  # ident -> ns/name
            may: set[str] = set()
            for key, db in by_key.items():
                if ((db.get("status") or {}).get("endpoint") or db["spec"]["endpoint"]) not in endpoints:
                    continue
                ident = view.ident(db["metadata"]["namespace"], db["metadata"]["name"])
                ready = _ready(db)
                if ready is not None and ready[0] == "True" and not db["metadata"].get("deletionTimestamp"):
                    must[ident] = key
                else:
                    may.add(ident)  # not Ready, being deleted, or never provisioned: either is consistent
            present_dbs, present_logins = view.databases(), view.logins()
            if self.scope is not None:
                mine = {view.ident(*key.split("/", 1)) for key in self.scope}
                present_dbs, present_logins = present_dbs & mine, present_logins & mine
            report.server_databases += len(present_dbs)
            where = "/".join(endpoints)
            for what, present in (("database", present_dbs), ("login", present_logins)):
                for ident, key in sorted(must.items()):
                    if ident not in present:
                        report.violations.append(
                            Violation("server", key, f"Ready but no {what} {ident} on {where}")
                        )
                for ident in sorted(present - set(must) - may):
                    report.violations.append(
                        Violation("orphan", f"{where}:{ident}", f"{what} on the server without a Database")
                    )
            self._check_calls(view, by_key, report, exact)

    def _check_calls(
        self,
        view: ServerView,
        by_key: Mapping[str, dict[str, Any]],
        report: CheckReport,
        exact: bool,
    ) -> None:
        calls: dict[str, list[Call]] = {}
        for call in view.calls():
            if not self._in_scope(call.namespace, call.name):
                continue
            calls.setdefault(f"{call.namespace}/{call.name}", []).append(call)
        attempts: dict[str, list[Call]] = {}
        for call in view.attempts():
            if not self._in_scope(call.namespace, call.name):
                continue
            attempts.setdefault(f"{call.namespace}/{call.name}", []).append(call)
        # Over the whole history (monotonic, so a scenario's share is a difference of two checks).
        report.create_retries += sum(max(0, len(tried) - 1) for tried in attempts.values())
        for key in sorted(set(calls) | set(attempts)):
            history = calls.get(key, [])
            tried = attempts.get(key, [])
            report.creates += sum(c.op == "create" for c in history)
            report.rotates += sum(c.op == "rotate" for c in history)
            report.deletes += sum(c.op == "delete" for c in history)
            db = by_key.get(key)
            if db is None:
                last_delete = max((c.id for c in history if c.op == "delete"), default=None)
                if last_delete is not None and any(c.op == "create" and c.id > last_delete for c in history):
                    report.violations.append(
                        Violation("create", key, "create ran after the delete of a gone Database")
                    )
                continue
            # Only calls since the current Database's incarnation began (a name may be re-used).
            born = (_epoch(db["metadata"].get("creationTimestamp")) or 0.0) - PROVISIONED_SLACK
            history = [c for c in history if c.started_at >= born]
            tried = [c for c in tried if c.started_at >= born]
            creates = [c for c in history if c.op == "create"]
            first_rotate = min((c.id for c in history if c.op == "rotate"), default=None)
            if first_rotate is not None and any(c.id > first_rotate for c in creates):
                report.violations.append(Violation("create", key, "create ran again after a rotation"))
            provisioned = _epoch((db.get("status") or {}).get("provisionedAt"))
            if provisioned is not None:
                late = [c for c in tried if c.started_at > provisioned + PROVISIONED_SLACK]
                if late:
                    report.violations.append(
                        Violation(
                            "create", key, f"{len(late)} create call(s) started after success was recorded"
                        )
                    )
                if exact and len(tried) != 1:
                    report.violations.append(
                        Violation(
                            "create", key, f"create reached the server {len(tried)} times, expected once"
                        )
                    )

    def _check_intents(
        self,
        by_key: Mapping[str, dict[str, Any]],
        report: CheckReport,
        expected: Mapping[str, Mapping[str, int]],
        allowed: frozenset[str],
    ) -> None:
        groups: dict[int, list[str]] = {}
        for endpoint, view in self.views.items():
            groups.setdefault(id(view), []).append(endpoint)
        for endpoints in groups.values():
            counted = count_intents(self.views[endpoints[0]].calls(), by_key, endpoints, expected)
            report.intents += counted.intents
            report.repeats += counted.repeats
            report.replays += counted.replays
            for key, ops in counted.calls.items():
                report.calls.setdefault(key, {}).update(ops)
            report.violations += [
                Violation("exactly-once", key, detail)
                for key, op, detail in counted.violations
                if op not in allowed
            ]

    def _check_operators(self, report: CheckReport) -> None:
        for i, op in enumerate(self.operators):
            if not op.running:
                report.violations.append(Violation("operator", f"operator {i}", "process is not running"))
                continue
            code, body = op.health("/healthz")
            if code != 200:
                report.violations.append(
                    Violation("operator", f"operator {i}", f"/healthz {code}: {body[:200]}")
                )
