"""The reliability suite's world: namespaces, audited DBMS endpoints, operators, storms and the report.

A scenario module builds one `World` (its own namespaces, its own private DBMS servers with the audit
wrappers, its own operator processes at trace level), throws storms of Databases at it while injecting a
fault, then lets `InvariantChecker` and `LeakScan` judge what is left. Storms are small by default (the
suite runs in `make test`); `DBAASCTL_SOAK=1` multiplies them for `make soak`.

Figures of each scenario (Databases, faults, retries) are appended to build/reliability/last-run.json,
the source of the table in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.controlplane import REPO, KubeTools
from testbed.dbms import MariaDBServer, PostgresServer
from testbed.invariants import CheckReport, InvariantChecker, ServerView, short_tail
from testbed.leakscan import LeakScan
from testbed.operator import API, Observer, OperatorProcess, apply, database, operator_config

__all__ = [
    "SOAK",
    "CrashSafeMariaDB",
    "World",
    "audited_mariadb_class",
    "audited_postgres_class",
    "crash",
    "crash_safe_postgres",
    "create_objects",
    "record_figures",
    "scale",
]

SOAK = os.environ.get("DBAASCTL_SOAK", "") == "1"
SOAK_FACTOR = int(os.environ.get("DBAASCTL_SOAK_FACTOR", "5") or "5")
RESULTS = REPO / "build" / "reliability" / "last-run.json"
CUMULATIVE = frozenset({"creates", "create_retries", "rotates", "deletes"})


def crash_safe_postgres() -> PostgresServer:
    """A PostgreSQL test server that keeps every commit it acknowledged through a SIGKILL.

    The shared test servers trade durability for speed (synchronous_commit=off): a commit is acknowledged
    before its WAL reaches the kernel, so a SIGKILL within ~200 ms forgets it. A password set by a rotate
    the operator saw succeed would be lost and the Secret would no longer log in: a DBMS breaking its
    promise, not an operator bug. fsync stays off (the kernel's page cache survives a process kill).
    """
    return PostgresServer(settings={"synchronous_commit": "on"})


class CrashSafeMariaDB(MariaDBServer):
    """MariaDB writing its redo log to the kernel at each commit (flushed once a second), for the same
    reason: the shared servers use innodb_flush_log_at_trx_commit=0, which loses up to a second of
    acknowledged commits when the server process dies."""

    def _command(self) -> list[str]:
        return [
            "--innodb-flush-log-at-trx-commit=2"
            if arg.startswith("--innodb-flush-log-at-trx-commit")
            else arg
            for arg in super()._command()
        ]


def crash(server: PostgresServer | MariaDBServer) -> None:
    """SIGKILL the server and every process it started, as a machine or container crash would."""
    server.kill()


def scale(n: int) -> int:
    """A storm's size: `n` in `make test`, `n * DBAASCTL_SOAK_FACTOR` (default 5) in `make soak`."""
    return n * SOAK_FACTOR if SOAK else n


#: The operator's idempotency key of the call, passed to the samples' create and rotate.
INTENT = "{{ operation.id }}"


def audited_postgres_class(
    name: str, *, slow: float = 0.0, payload: str | None = None, rotation_interval: str | None = None
) -> dict[str, Any]:
    """A DatabaseClass over the audit wrappers of the PostgreSQL sample (audit.create_database & co).

    `slow` makes every call sleep on the server first (widens the window a fault can hit); `payload` is a
    template passed as the wrappers' extra input (hostile-input tests compare it byte for byte).
    """
    inputs = {"k8sNamespace": "{{ metadata.namespace }}", "k8sName": "{{ metadata.name }}"}
    with_payload = {**inputs, "payload": payload} if payload is not None else inputs
    keyed = {**with_payload, "intent": INTENT}  # create and rotate take the idempotency key
    operations: dict[str, Any] = {
        "create": {"name": "audit.create_database", "inputs": keyed},
        "rotate": {"name": "audit.rotate_password", "inputs": keyed},
        "delete": {"name": "audit.drop_database", "inputs": with_payload},
    }
    if slow:
        delayed = {**inputs, "delay": str(slow)}
        operations = {
            "create": {"name": "audit.slow_create_database", "inputs": {**delayed, "intent": INTENT}},
            "rotate": {"name": "audit.slow_rotate_password", "inputs": {**delayed, "intent": INTENT}},
            "delete": {"name": "audit.slow_drop_database", "inputs": delayed},
        }
    spec: dict[str, Any] = {"driver": "postgres", "operations": operations}
    if rotation_interval:
        spec["rotation"] = {"interval": rotation_interval}
    return {"apiVersion": API, "kind": "DatabaseClass", "metadata": {"name": name}, "spec": spec}


def audited_mariadb_class(name: str, *, slow: float = 0.0) -> dict[str, Any]:
    inputs = {"0": "{{ metadata.namespace }}", "1": "{{ metadata.name }}"}
    names = (
        ("audit_slow_create", "audit_slow_rotate", "audit_slow_delete")
        if slow
        else ("audit_create", "audit_rotate", "audit_delete")
    )
    if slow:
        inputs = {**inputs, "2": str(slow)}
    keyed = {**inputs, str(len(inputs)): INTENT}  # create and rotate take the idempotency key last
    return {
        "apiVersion": API,
        "kind": "DatabaseClass",
        "metadata": {"name": name},
        "spec": {
            "driver": "mariadb",
            "operations": {
                "create": {"name": names[0], "inputs": keyed},
                "rotate": {"name": names[1], "inputs": keyed},
                "delete": {"name": names[2], "inputs": inputs},
            },
        },
    }


def record_figures(scenario: str, figures: dict[str, Any]) -> None:
    """Merge one scenario's figures into build/reliability/last-run.json (the report's source)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        doc = json.loads(RESULTS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = {}
    doc.setdefault("scenarios", {})[scenario] = {
        **figures,
        "soak": SOAK,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    RESULTS.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@dataclass
class World:
    """One module's system namespace, app namespaces, endpoints and operators."""

    kube: KubeTools
    workdir: Path
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    system: str = ""
    namespaces: list[str] = field(default_factory=list)
    views: dict[str, ServerView] = field(default_factory=dict)
    operators: list[OperatorProcess] = field(default_factory=list)
    #: Stopped for good by the test (their logs are still scanned for leaks).
    retired: list[OperatorProcess] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    #: OperatorConfig entries: (databaseClassName, [endpoint, ...]).
    dbms: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    leaks: LeakScan = field(default_factory=LeakScan)
    keepalive: int = 1  # seconds between endpoint health pings (OperatorConfig spec.keepalive)
    _totals: dict[str, int] = field(default_factory=dict)
    _op_base: dict[tuple[int, str], int] = field(default_factory=dict)

    @classmethod
    def create(cls, kube: KubeTools, workdir: Path, prefix: str, apps: int = 1) -> World:
        world = cls(kube, workdir)
        world.system = kube.create_namespace(f"rel-sys-{world.suffix}")
        world.namespaces = [kube.create_namespace(f"{prefix}-{i}-{world.suffix}") for i in range(apps)]
        return world

    @property
    def ns(self) -> str:
        return self.namespaces[0]

    @property
    def obs(self) -> Observer:
        return Observer(self.kube, self.operators[0] if self.operators else None)

    def checker(self) -> InvariantChecker:
        return InvariantChecker(
            self.kube, self.namespaces, self.views, [op for op in self.operators if op.running]
        )

    # -- configuration -------------------------------------------------------------------------------

    def add_class(self, manifest: dict[str, Any]) -> str:
        apply(self.kube, manifest)
        name = str(manifest["metadata"]["name"])
        if name not in self.classes:
            self.classes.append(name)
        return name

    def add_endpoint(self, class_name: str, endpoint: dict[str, Any], view: ServerView | None = None) -> None:
        for cls_name, eps in self.dbms:
            if cls_name == class_name:
                eps.append(endpoint)
                break
        else:
            self.dbms.append((class_name, [endpoint]))
        if view is not None:
            self.views[endpoint["name"]] = view
        if "dsn" in endpoint:
            self.leaks.add_dsn(endpoint["dsn"], f"endpoint {endpoint['name']}")

    def remove_endpoint(self, name: str) -> dict[str, Any]:
        for _, eps in self.dbms:
            for ep in eps:
                if ep["name"] == name:
                    eps.remove(ep)
                    return ep
        raise KeyError(name)

    def apply_config(self) -> None:
        apply(self.kube, operator_config("dbaasctl", self.system, self.dbms, keepalive=self.keepalive))

    def dsn_secret(self, name: str, dsn: str) -> dict[str, Any]:
        self.leaks.add_dsn(dsn, f"DSN Secret {name}")
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": self.system},
            "stringData": {"dsn": dsn},
        }
        apply(self.kube, secret)
        return secret

    # -- operators -----------------------------------------------------------------------------------

    def start_operator(
        self, *, leader_elect: bool = False, extra_args: Sequence[str] = (), kubeconfig: Path | None = None
    ) -> OperatorProcess:
        """An operator at trace level on the world's namespaces; `kubeconfig` points it elsewhere (e.g.
        at the API server through a fault-injecting proxy)."""
        args = [f"--watch-namespaces={','.join(self.namespaces)}", *extra_args]
        if leader_elect:
            # Short leases so a lost leader is replaced within seconds, not the default 15 s.
            args += ["--lease-duration=4", "--renew-deadline=3", "--retry-period=0.5"]
        op = OperatorProcess(
            kubeconfig or self.kube.kubeconfig,
            self.system,
            self.workdir / f"operator-{len(self.operators)}",
            extra_args=args,
            leader_elect=leader_elect,
            log_level="trace",
        )
        self.operators.append(op)
        op.start()
        return op

    def retire(self, op: OperatorProcess) -> None:
        """Stop an operator for good: no longer expected to be alive, still scanned for leaks."""
        op.stop()
        self.operators.remove(op)
        self.retired.append(op)

    # -- storms --------------------------------------------------------------------------------------

    def names(self, prefix: str, n: int) -> list[str]:
        return [f"{prefix}-{i:03d}" for i in range(n)]

    def create_many(
        self, names: Iterable[str], endpoint: str, namespace: str | None = None, **kw: Any
    ) -> None:
        ns = namespace or self.ns
        apply_retrying(self.kube, [database(n, ns, endpoint, **kw) for n in names])

    def annotate_many(self, names: Sequence[str], annotation: str, namespace: str | None = None) -> None:
        kubectl_retrying(
            self.kube,
            "annotate",
            "--overwrite",
            "-n",
            namespace or self.ns,
            *[f"db/{n}" for n in names],
            annotation,
        )

    def delete_many(self, names: Sequence[str], namespace: str | None = None) -> None:
        kubectl_retrying(
            self.kube,
            "delete",
            "db",
            "-n",
            namespace or self.ns,
            "--wait=false",
            "--ignore-not-found",
            *names,
        )

    def list_dbs(self, namespace: str | None = None) -> dict[str, dict[str, Any]]:
        items = kubectl_retrying(self.kube, "get", "databases", "-n", namespace or self.ns, "-o", "json")
        return {d["metadata"]["name"]: d for d in json.loads(items)["items"]}

    def wait_dbs(
        self,
        what: str,
        done: Callable[[dict[str, dict[str, Any]]], bool],
        *,
        namespace: str | None = None,
        timeout: float = 120.0,
    ) -> dict[str, dict[str, Any]]:
        """Poll the namespace's Databases (one kubectl per round) until `done(by_name)`."""
        timeout *= SOAK_FACTOR if SOAK else 1  # bigger storms take longer; the bound stays finite
        deadline = time.monotonic() + timeout
        last: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            last = self.list_dbs(namespace)
            if done(last):
                return last
            time.sleep(0.5)
        summary = {n: ready_of(d) for n, d in sorted(last.items())}
        tails = "".join(f"\noperator {i}:\n{short_tail(op)}" for i, op in enumerate(self.operators))
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; state: {summary}{tails}")

    def wait_ready(
        self, names: Iterable[str], *, namespace: str | None = None, timeout: float = 120.0
    ) -> None:
        wanted = set(names)

        def done(dbs: dict[str, dict[str, Any]]) -> bool:
            return all(
                n in dbs and (ready_of(dbs[n]) or ("",))[0] == "True" and current(dbs[n]) for n in wanted
            )

        self.wait_dbs(f"{len(wanted)} Databases Ready", done, namespace=namespace, timeout=timeout)

    def wait_gone(
        self, names: Iterable[str], *, namespace: str | None = None, timeout: float = 120.0
    ) -> None:
        wanted = set(names)
        self.wait_dbs(
            f"{len(wanted)} Databases deleted",
            lambda dbs: not wanted & set(dbs),
            namespace=namespace,
            timeout=timeout,
        )

    def wait_generation(
        self, names: Iterable[str], at_least: int, *, namespace: str | None = None, timeout: float = 120.0
    ) -> None:
        wanted = set(names)

        def done(dbs: dict[str, dict[str, Any]]) -> bool:
            return all(
                n in dbs
                and int((dbs[n].get("status") or {}).get("credentialGeneration") or 0) >= at_least
                and (ready_of(dbs[n]) or ("",))[0] == "True"
                and "dbaasctl.io/rotate" not in (dbs[n]["metadata"].get("annotations") or {})
                for n in wanted
            )

        self.wait_dbs(
            f"{len(wanted)} rotations to generation {at_least}", done, namespace=namespace, timeout=timeout
        )

    # -- judging -------------------------------------------------------------------------------------

    def judge(self, scenario: str, faults: Sequence[str], **check: Any) -> CheckReport:
        """Invariants now, then the figures of this scenario into the report."""
        checker = self.checker()
        report = checker.assert_holds(**check)
        self.leaks.add_all(checker.seen_passwords, "a credentials Secret")
        totals = {**report.figures(), **self.operator_figures()}
        # Server-side counts and operator counters are cumulative: report this scenario's share.
        delta = {k: v - self._totals.get(k, 0) if k in CUMULATIVE else v for k, v in totals.items()}
        self._totals = {k: v for k, v in totals.items() if k in CUMULATIVE}
        record_figures(scenario, {**delta, "faults": list(faults)})
        return report

    def operator_figures(self) -> dict[str, int]:
        """Operator-side counters since the last call (a restarted process starts from zero again)."""
        wanted = {
            "operation_errors": ("dbaasctl_database_operations_total", {"result": "error"}),
            "queue_retries": ("workqueue_retries_total", {"name": "database"}),
        }
        out = dict.fromkeys(wanted, 0)
        for op in self.operators:
            if not op.running:
                continue
            for key, (metric, labels) in wanted.items():
                value = int(op.metric(metric, labels) or 0)
                base = self._op_base.get((id(op), key), 0)
                out[key] += value - base if value >= base else value
                self._op_base[(id(op), key)] = value
        return out

    def scan_leaks(self, extra: dict[str, str] | None = None) -> dict[str, int]:
        """Collect every secret the world used, read every sink, fail on any hit."""
        for view in self.views.values():
            self.leaks.add_all(view.issued_passwords(), f"issued by {view.kind}")
        self.leaks.add_secrets_in(self.kube, [*self.namespaces, self.system])
        self.leaks.gather(
            self.kube, self.namespaces, [*self.operators, *self.retired], system_namespace=self.system
        )
        for name, text in (extra or {}).items():
            self.leaks.add_sink(name, text)
        for op in [*self.operators, *self.retired]:
            assert '"level": "trace"' in op.log_text(), "an operator log without trace lines proves nothing"
        return self.leaks.assert_clean(min_needles=3)

    # -- teardown ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the operators and let everything go; never raises.

        Nothing is deleted through the operator: the DBMS servers are private and thrown away with the
        module, so finalizers are simply removed and the namespaces deleted.
        """
        for op in self.operators:
            op.stop()
        stuck: list[tuple[str, str]] = []
        for ns in self.namespaces:
            proc = self.kube.kubectl("get", "databases", "-n", ns, "-o", "json", check=False)
            if proc.returncode == 0:
                stuck += [(ns, d["metadata"]["name"]) for d in json.loads(proc.stdout)["items"]]

        def release(item: tuple[str, str]) -> None:
            self.kube.kubectl(
                "patch", "database", "-n", item[0], item[1], "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}', check=False,
            )  # fmt: skip

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(release, stuck))
        self.kube.kubectl("delete", "namespace", *self.namespaces, self.system, "--wait=false", check=False)
        for name in self.classes:
            self.kube.kubectl("delete", "databaseclass", name, "--wait=false", check=False)


def ready_of(db: dict[str, Any]) -> tuple[str, str] | None:
    ready = Observer.ready_of(db)
    return (ready[0], ready[1]) if ready else None


def current(db: dict[str, Any]) -> bool:
    return bool((db.get("status") or {}).get("observedGeneration") == db["metadata"].get("generation"))


_TRANSIENT = ("connection refused", "EOF", "ServiceUnavailable", "timeout", "connection reset", "etcdserver")


def kubectl_retrying(kube: KubeTools, *args: str, input: str | None = None, timeout: float = 90.0) -> str:
    """kubectl that rides out an API server restart (bounded); other errors fail at once."""
    deadline = time.monotonic() + timeout
    while True:
        proc = kube.kubectl(*args, input=input, check=False, timeout=60)
        if proc.returncode == 0:
            return str(proc.stdout)
        if not any(s in proc.stderr for s in _TRANSIENT) or time.monotonic() > deadline:
            raise RuntimeError(f"kubectl {' '.join(args[:3])} failed: {proc.stderr.strip()[:500]}")
        time.sleep(0.5)


def apply_retrying(kube: KubeTools, objs: Sequence[dict[str, Any]], timeout: float = 90.0) -> None:
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)})
    kubectl_retrying(kube, "apply", "-f", "-", input=doc, timeout=timeout)


def create_objects(kube: KubeTools, objs: Sequence[dict[str, Any]]) -> None:
    """`kubectl create`: no last-applied-configuration annotation doubling a large object's size."""
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)})
    kubectl_retrying(kube, "create", "-f", "-", input=doc)


@contextmanager
def world_of(kube: KubeTools, workdir: Path, prefix: str, apps: int = 1) -> Iterator[World]:
    world = World.create(kube, workdir, prefix, apps)
    try:
        yield world
    finally:
        world.close()


def render_table(path: Path = RESULTS) -> str:
    """The figures of the last run as the Markdown table in docs/reliability.md."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    head = (
        "| scenario | faults injected | Databases | Ready (logins checked) | creates / retried | "
        "rotates | deletes | operator errors / queue retries | violations |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for name, f in sorted(doc["scenarios"].items(), key=lambda item: str(item[1].get("at"))):
        rows.append(
            f"| {name} | {', '.join(f['faults'])} | {f['databases']} | {f['ready']} ({f['logins_verified']}) | "
            f"{f['creates']} / {f['create_retries']} | {f['rotates']} | {f['deletes']} | "
            f"{f['operation_errors']} / {f['queue_retries']} | {f['violations']} |"
        )
    return head + "\n".join(rows) + "\n"
