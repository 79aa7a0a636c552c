"""`make demo`: the whole product on one machine, in about a minute, with nothing faked.

A real control plane and a real PostgreSQL with the sample procedures; the CRDs and the sample
DatabaseClass, OperatorConfig (its DSN Secret pointed at the local server) and Database from
deploy/samples; `dbaasctl run` as a separate process. It waits for Ready, shows the Secret's keys (values
only for username and database), proves the credentials work by connecting and creating a table, then
deletes the Database and shows the database is gone. With KEEP=1 everything stays up until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from testbed.controlplane import REPO, ControlPlane
from testbed.dbms import PostgresServer
from testbed.operator import SAMPLES, Observer, OperatorProcess, install_postgres_procedures
from testbed.state import register_demo, unregister_demo

CRDS = REPO / "deploy" / "crds"
SAMPLE = SAMPLES / "postgres"


def _step(text: str) -> None:
    print(f"==> {text}", flush=True)


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _apply(cluster: ControlPlane, docs: list[dict[str, Any]]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))


async def _prove(creds: dict[str, str]) -> tuple[str, int]:
    from testbed.logins import pg_login  # asyncpg only once the demo gets this far

    conn = await pg_login(creds)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS demo (id serial PRIMARY KEY, note text)")
        await conn.execute("INSERT INTO demo (note) VALUES ($1)", "hello from dbaasctl")
        user = str(await conn.fetchval("SELECT current_user"))
        rows = int(await conn.fetchval("SELECT count(*) FROM demo"))
    finally:
        await conn.close()
    return user, rows


def _dbaasctl() -> str:
    """The command as the user can type it: the venv's console script, else the module."""
    script = Path(sys.executable).parent / "dbaasctl"
    return str(script) if script.exists() else f"{sys.executable} -m dbaasctl"


def _wait_for_signal() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()


def run_demo(keep: bool) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="dbaasctl-demo-"))
    cluster: ControlPlane | None = None
    pg: PostgresServer | None = None
    operator: OperatorProcess | None = None
    started = time.monotonic()
    kept = False
    try:
        _step("starting a local control plane (etcd, kube-apiserver, kube-controller-manager)")
        cluster = ControlPlane().start()
        _step("starting PostgreSQL and loading deploy/samples/postgres/procedures.sql")
        pg = PostgresServer().start()
        dsn = install_postgres_procedures(pg)

        _step("installing the CRDs and the sample DatabaseClass, DSN Secret and OperatorConfig")
        cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
        config_docs = _load(SAMPLE / "operatorconfig.yaml")
        system = next(d for d in config_docs if d["kind"] == "OperatorConfig")["metadata"]["namespace"]
        (db_doc,) = _load(SAMPLE / "database.yaml")
        app_ns, db_name = db_doc["metadata"]["namespace"], db_doc["metadata"]["name"]
        for ns in (system, app_ns):
            cluster.create_namespace(ns)
        for doc in config_docs:
            if doc["kind"] == "Secret":
                doc["stringData"]["dsn"] = dsn  # the sample points at a cluster service; use the local server
        _apply(cluster, [*_load(SAMPLE / "databaseclass.yaml"), *config_docs])

        _step(f"running the operator: python -m dbaasctl run --namespace {system} ...")
        operator = OperatorProcess(cluster.kubeconfig, system, workdir / "operator", log_level="info").start()
        obs = Observer(cluster, operator)

        _step(f"applying deploy/samples/postgres/database.yaml ({app_ns}/{db_name}) and waiting for Ready")
        _apply(cluster, [db_doc])
        cluster.kubectl("wait", "--for=condition=Ready", "-n", app_ns, f"db/{db_name}", "--timeout=120s")
        print(cluster.kubectl("get", "db", "-n", app_ns).stdout, flush=True)

        db = obs.db(app_ns, db_name) or {}
        secret_name = db["status"]["secretName"]
        secret = obs.secret(app_ns, secret_name)
        assert secret is not None, "the Secret is missing"
        creds = Observer.decoded(secret)
        _step(f"Secret {app_ns}/{secret_name} has the keys: {', '.join(sorted(creds))}")
        print(f"    username = {creds['username']}\n    database = {creds['database']}", flush=True)

        _step("connecting with those credentials")
        user, rows = asyncio.run(_prove(creds))
        print(f"    connected as {user}; created table demo and inserted a row ({rows} row(s))", flush=True)
        print(f"==> demo succeeded in {time.monotonic() - started:.0f}s", flush=True)

        if keep:
            kept = True
            register_demo(cluster.kubeconfig, operator.log_path)
            print(
                "\nKEEP=1: everything stays up until Ctrl-C here, or `make cluster-down` in another shell.\n"
                "In another shell:\n"
                f"    export KUBECONFIG={cluster.kubeconfig}\n"
                f"    kubectl get db -A; kubectl describe db -n {app_ns} {db_name}\n"
                f"    kubectl annotate db -n {app_ns} {db_name} dbaasctl.io/rotate=true   # rotate\n"
                f"    {_dbaasctl()} check --kubeconfig {cluster.kubeconfig} -n {system}   # the DBA's check\n"
                f"operator log (kept after the demo stops): {operator.log_path}\n"
                f"metrics: {operator.metrics_url}",
                flush=True,
            )
            _wait_for_signal()
            return 0

        _step(f"deleting {app_ns}/{db_name}: the delete procedure drops the database and its login")
        cluster.kubectl("delete", "db", "-n", app_ns, db_name, "--timeout=60s")
        left = pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{creds['database']}'").strip()
        print(f"    databases named {creds['database']} left on the server: {left}", flush=True)
        return 0 if left == "0" else 1
    except Exception as exc:
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if operator is not None:
            print(
                f"--- operator log (last lines, {operator.log_path}) ---\n{operator.tail(40)}",
                file=sys.stderr,
            )
        return 1
    finally:
        _step("cleaning up")
        t0 = time.monotonic()
        if operator is not None:
            operator.stop()
        t1 = time.monotonic()
        if pg is not None:
            pg.close()
        t2 = time.monotonic()
        if cluster is not None:
            cluster.stop()
        print(
            f"    stopped the operator in {t1 - t0:.0f}s, PostgreSQL in {t2 - t1:.0f}s, "
            f"the control plane in {time.monotonic() - t2:.0f}s",
            flush=True,
        )
        unregister_demo()
        if kept and operator is not None:
            print(f"operator log kept: {operator.log_path}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
