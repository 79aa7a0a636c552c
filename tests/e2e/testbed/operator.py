"""The operator as the e2e suite and `make demo` run it: `python -m dbaasctl run ...` in a subprocess.

Nothing in-process: the real entry point parses its flags, connects with the kubeconfig it is given
(an admin one, or a ServiceAccount's to prove the RBAC), serves /healthz, /readyz and /metrics on free
loopback ports and logs JSON lines to a file the tests can read. `start()` returns once /readyz answers
200 (informers synced and, with leader election, the lease held).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import port_for

from testbed.controlplane import REPO
from testbed.leakscan import SUITE
from testbed.polling import poll
from testbed.process import Service


def _free_port() -> int:
    return int(port_for.select_random())


#: Every operator process this interpreter started, so the run-wide leak scan reads all their logs.
STARTED: list[OperatorProcess] = []
#: The e2e suite runs operators at trace level (every API call and watch event logged), so the leak scan
#: sees the most a careless log line could carry; DBAASCTL_E2E_OPERATOR_LOG_LEVEL overrides it.
DEFAULT_LOG_LEVEL = os.environ.get("DBAASCTL_E2E_OPERATOR_LOG_LEVEL", "trace")


class OperatorProcess:
    """One `dbaasctl run` child; restartable on the same ports (crash/restart tests)."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        workdir: Path,
        *,
        config_name: str = "dbaasctl",
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        leader_elect: bool = False,
        log_level: str = DEFAULT_LOG_LEVEL,
        start_timeout: float = 90.0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.health_port = _free_port()
        self.metrics_port = _free_port()
        self.log_path = workdir / f"operator-{self.health_port}.log"
        args = [
            sys.executable,
            "-m",
            "dbaasctl",
            "run",
            f"--kubeconfig={kubeconfig}",
            f"--namespace={namespace}",
            f"--config-name={config_name}",
            f"--health-addr=127.0.0.1:{self.health_port}",
            f"--metrics-addr=127.0.0.1:{self.metrics_port}",
            "--leader-elect" if leader_elect else "--no-leader-elect",
            "--log-format=json",
            f"--log-level={log_level}",
            *extra_args,
        ]
        child_env = {
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            ),
            "PYTHONUNBUFFERED": "1",
            # The child must not pick up the developer's cluster or settings by accident.
            "KUBECONFIG": str(kubeconfig),
            **(env or {}),
        }
        for name in list(os.environ):
            if name.startswith("DBAASCTL_") and name not in child_env:
                child_env[name] = ""  # mirakuru merges os.environ; blank values are ignored by the operator
        self.service = Service(
            "dbaasctl",
            args,
            self.log_path,
            self._ready,
            start_timeout=start_timeout,
            stop_timeout=30.0,
            env=child_env,
            cwd=REPO,
        )

    # -- URLs ----------------------------------------------------------------------------------------
    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.health_url}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> OperatorProcess:
        if self not in STARTED:
            STARTED.append(self)
        self.service.start()
        return self

    def stop(self) -> None:
        self.service.stop()

    def kill(self) -> None:
        """SIGKILL: a crash, no graceful shutdown."""
        self.service.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.service.running()

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observation ---------------------------------------------------------------------------------
    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            return str(resp.read().decode("utf-8"))

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """The value of one sample, e.g. `metric("dbaasctl_database_operations_total", {"operation": "create"})`
        summed over the series that match the given labels; None when no series matches."""
        total: float | None = None
        for line in self.metrics().splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            metric_name, _, label_text = series.partition("{")
            if metric_name != name:
                continue
            found = _parse_labels(label_text.rstrip("}"))
            if labels and any(found.get(k) != v for k, v in labels.items()):
                continue
            total = (total or 0.0) + float(value)
        return total

    def health(self, path: str = "/healthz") -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"{self.health_url}{path}", timeout=5) as resp:
                return int(resp.status), resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode("utf-8")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_records(self) -> Iterator[dict[str, Any]]:
        for line in self.log_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record

    def tail(self, lines: int = 60) -> str:
        return self.service.tail(lines)

    def wait_for_log(self, predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
        found = poll(lambda: next((r for r in self.log_records() if predicate(r)), None), timeout, 0.3)
        if found is None:
            raise AssertionError(f"no matching operator log line within {timeout}s; tail:\n{self.tail()}")
        return found


def _parse_labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(text):
        eq = text.index("=", i)
        key = text[i:eq].strip().lstrip(",").strip()
        j = eq + 2  # skip ="
        value = []
        while text[j] != '"':
            if text[j] == "\\":
                j += 1
            value.append(text[j])
            j += 1
        out[key] = "".join(value)
        i = j + 1
        while i < len(text) and text[i] in ", ":
            i += 1
    return out


# -- the world the operator needs: procedures, a class, a config ---------------------------------------

SAMPLES = REPO / "deploy" / "samples"
API = "dbaasctl.io/v1"


def install_postgres_procedures(server: Any, database: str = "dbaas", *, ab: bool = False) -> str:
    """Load deploy/samples/postgres/procedures.sql (and with `ab` procedures-ab.sql, the two-phase
    rotation functions) into a new `database`; returns the operator's DSN for it."""
    server.create_database(database)
    for name in ("procedures.sql", "procedures-ab.sql") if ab else ("procedures.sql",):
        server.psql(
            file=SAMPLES / "postgres" / name,
            database=database,
            variables={"loopback_user": server.admin_user, "loopback_password": server.admin_password},
        )
    return str(server.dsn_for(database))


def install_mariadb_procedures(server: Any, database: str = "dbaas") -> str:
    server.create_database(database)
    server.sql(file=SAMPLES / "mariadb" / "procedures.sql", database=database)
    return str(server.dsn_for(database))


def postgres_class(
    name: str,
    *,
    rotation_interval: str | None = None,
    secret_format: dict[str, str] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    create_inputs: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A DatabaseClass over the PostgreSQL sample functions (dbaas.create_database & co)."""
    inputs = {"k8sNamespace": "{{ metadata.namespace }}", "k8sName": "{{ metadata.name }}"}
    spec: dict[str, Any] = {
        "driver": "postgres",
        "operations": {
            "create": {"name": "dbaas.create_database", "inputs": create_inputs or inputs},
            "rotate": {"name": "dbaas.rotate_password", "inputs": inputs},
            "delete": {"name": "dbaas.drop_database", "inputs": inputs},
        },
    }
    if secret_format is not None:
        spec["secretFormat"] = secret_format
    if parameters is not None:
        spec["parameters"] = parameters
    if rotation_interval is not None:
        spec["rotation"] = {"interval": rotation_interval}
    return {"apiVersion": API, "kind": "DatabaseClass", "metadata": {"name": name}, "spec": spec}


def mariadb_reference_class(name: str, api_version: str = API) -> dict[str, Any]:
    """A class written the reference operator's way: Go-style templates, positional MariaDB inputs."""
    inputs = {"0": "{{ .Metadata.namespace }}", "1": "{{ .Metadata.name }}"}
    return {
        "apiVersion": api_version,
        "kind": "DatabaseClass",
        "metadata": {"name": name},
        "spec": {
            "driver": "mariadb",
            "operations": {
                "create": {"name": "dbaas_create", "inputs": inputs},
                "delete": {"name": "dbaas_delete", "inputs": inputs},
                "rotate": {"name": "dbaas_rotate", "inputs": inputs},
            },
            "secretFormat": {
                "username": "{{ .Result.username }}",
                "password": "{{ .Result.password }}",
                "dbName": "{{ .Result.dbName }}",
                "server": "{{ .Result.host }}",
                "port": "{{ .Result.port }}",
                "dsn": "mysql://{{ .Result.username }}:{{ .Result.password }}@{{ .Result.host }}:{{ .Result.port }}/"
                "{{ .Result.dbName }}",
            },
        },
    }


def operator_config(
    name: str,
    namespace: str,
    dbms: list[tuple[str, list[dict[str, Any]]]],
    *,
    keepalive: int = 1,
    rps: float = 0,
) -> dict[str, Any]:
    """An OperatorConfig: `dbms` is [(databaseClassName, [endpoint, ...]), ...]."""
    return {
        "apiVersion": API,
        "kind": "OperatorConfig",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "rps": rps,
            "keepalive": keepalive,
            "dbms": [{"databaseClassName": cls, "endpoints": eps} for cls, eps in dbms],
        },
    }


def database(
    name: str,
    namespace: str,
    endpoint: str,
    *,
    params: dict[str, str] | None = None,
    deletion_policy: str | None = None,
    secret_name: str | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"endpoint": endpoint}
    if params:
        spec["params"] = params
    if deletion_policy:
        spec["deletionPolicy"] = deletion_policy
    if secret_name:
        spec["secretName"] = secret_name
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": API, "kind": "Database", "metadata": meta, "spec": spec}


def apply(kube: Any, *objs: dict[str, Any]) -> None:
    """`kubectl apply` of manifests given as dicts (a List, so one process for many objects)."""
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)})
    proc = kube.kubectl("apply", "-f", "-", input=doc, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl apply failed: {proc.stderr.strip()}")


def release_databases(kube: Any, namespace: str) -> None:
    """Strip the finalizer from every Database left in `namespace`.

    For teardown, once the operator is stopped: what it could not finish must not pin the namespace's
    deletion forever, nor be found by an operator a later test starts.
    """
    for item in kube.kubectl_json("get", "databases", "-n", namespace)["items"]:
        kube.kubectl(
            "patch", "database", "-n", namespace, item["metadata"]["name"], "--type=merge",
            "-p", '{"metadata":{"finalizers":null}}', check=False,
        )  # fmt: skip


# -- reading what the operator did -------------------------------------------------------------------


class Observer:
    """kubectl-based reads and bounded waits on Databases, their Secrets and Events."""

    def __init__(self, kube: Any, operator: OperatorProcess | None = None) -> None:
        self.kube = kube
        self.operator = operator

    def _get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as JSON, None when it does not exist; any other kubectl failure raises."""
        proc = self.kube.kubectl("get", kind, "-n", namespace, name, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise RuntimeError(proc.stderr)
        doc: dict[str, Any] = json.loads(proc.stdout)
        return doc

    def db(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("database", namespace, name)

    @staticmethod
    def ready_of(db: dict[str, Any] | None) -> tuple[str, str, str] | None:
        for cond in ((db or {}).get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready":
                return cond["status"], cond["reason"], cond.get("message", "")
        return None

    def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        secret = self._get("secret", namespace, name)
        if secret is not None:  # every credential a test sees is searched for in every operator log
            SUITE.add_secret(secret, f"Secret {namespace}/{name}")
        return secret

    @staticmethod
    def decoded(secret: dict[str, Any]) -> dict[str, str]:
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def events(self, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
        """Events (events.k8s.io/v1) about Databases in a namespace, oldest first."""
        items = self.kube.kubectl_json("get", "events.events.k8s.io", "-n", namespace)["items"]
        out = [
            e
            for e in items
            if (e.get("regarding") or {}).get("kind") == "Database"
            and (name is None or (e.get("regarding") or {}).get("name") == name)
        ]
        return sorted(out, key=lambda e: e.get("eventTime") or e["metadata"].get("creationTimestamp") or "")

    def reasons(self, namespace: str, name: str) -> list[tuple[str, str]]:
        return [(e.get("type", ""), e.get("reason", "")) for e in self.events(namespace, name)]

    def wait(self, what: str, predicate: Any, timeout: float = 60.0, interval: float = 0.3) -> Any:
        """Poll `predicate()` until it returns something truthy; fail with the operator's log tail."""
        last: Any = None

        def check() -> Any:
            nonlocal last
            last = predicate()
            return last

        found = poll(check, timeout, interval)
        if found:
            return found
        tail = self.operator.tail(40) if self.operator is not None else ""
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}\n{tail}")

    def wait_db(
        self, namespace: str, name: str, status: str, reason: str | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            db = self.db(namespace, name)
            ready = self.ready_of(db)
            if ready is not None and ready[0] == status and (reason is None or ready[1] == reason):
                return db
            return None

        result: dict[str, Any] = self.wait(
            f"{namespace}/{name} Ready={status} {reason or ''}", check, timeout
        )
        return result

    def wait_event(self, namespace: str, name: str, reason: str, timeout: float = 60.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            for event in self.events(namespace, name):
                if event.get("reason") == reason:
                    return event
            return None

        result: dict[str, Any] = self.wait(f"event {reason} for {namespace}/{name}", check, timeout)
        return result

    def wait_gone(self, namespace: str, name: str, timeout: float = 60.0) -> None:
        self.wait(f"{namespace}/{name} deleted", lambda: self.db(namespace, name) is None, timeout)
