"""Everything a benchmark runs against: the test bed's control plane and PostgreSQL, the CRDs, both
procedure sets, the classes and the OperatorConfig, and factories for the subjects under test.

`World.start()` owns its servers (the CLI); `World.attach()` borrows running ones (the e2e smoke test).
Both procedure sets live in one database, `bench`: the real samples (schema `dbaas`, a database per
Database) and the fast set (schema `dbaas_fast`, a role + schema per Database).
"""

from __future__ import annotations

import os
import platform
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from bench import procstat
from bench.api import Api
from bench.subjects import OperatorSubject, RawSubject, Subject
from testbed.controlplane import REPO, ControlPlane
from testbed.dbms import PostgresServer
from testbed.operator import apply, install_postgres_procedures

BENCH = Path(__file__).resolve().parent
FAST_SQL = BENCH / "sql" / "postgres_fast.sql"
FAST_MANIFESTS = BENCH / "manifests" / "postgres-fast.yaml"
SAMPLE_CLASS = REPO / "deploy" / "samples" / "postgres" / "databaseclass.yaml"
CRDS = REPO / "deploy" / "crds"
DATABASE = "bench"

#: procedure set → (DatabaseClass name, endpoint name, raw baseline's create / rotate / delete).
PROCEDURES: dict[str, tuple[str, str, tuple[str, str, str]]] = {
    "fast": (
        "bench-fast",
        "fast",
        ("dbaas_fast.create_database", "dbaas_fast.rotate_password", "dbaas_fast.drop_database"),
    ),
    "sample": (
        "bench-sample",
        "sample",
        ("dbaas.create_database", "dbaas.rotate_password", "dbaas.drop_database"),
    ),
}


#: Subjects started from a raw-baseline spec → the module they run.
PEERS = {"raw": "bench.raw", "kopf": "bench.peers.kopf_operator"}


def _own_cpu(pid: int) -> float:
    return procstat.sample(pid).cpu_seconds


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


@dataclass
class World:
    kube: ControlPlane
    pg: PostgresServer
    workdir: Path
    owned: bool
    system: str = field(default_factory=lambda: f"bench-system-{secrets.token_hex(3)}")
    dsn: str = ""
    stat_statements: bool = False
    #: `dbaasctl run --log-level`; trace logs every API request (costly: for finding out, not measuring).
    operator_log_level: str = "info"
    #: When set, every operator subject runs under cProfile and leaves `<label>-<namespace>.prof` here.
    profile_dir: Path | None = None
    #: The `baseline` subject's operator package (another revision's `src`), when it is measured.
    baseline_src: Path | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    @classmethod
    def start(cls) -> World:
        workdir = Path(tempfile.mkdtemp(prefix="dbaasctl-bench-"))
        kube = ControlPlane()
        pg = PostgresServer(
            settings={"shared_preload_libraries": "pg_stat_statements", "max_connections": "300"}
        )
        try:
            kube.start()
            pg.start()
            world = cls(kube, pg, workdir, owned=True)
            world.prepare()
        except BaseException:
            pg.close()
            kube.stop()
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return world

    @classmethod
    def attach(cls, kube: ControlPlane, pg: PostgresServer, workdir: Path) -> World:
        """Borrow running servers whose CRDs the caller installed (re-applying changed CRDs would
        re-initialise their storage under everyone else using the control plane)."""
        world = cls(kube, pg, workdir, owned=False)
        world.prepare(install_crds=False)
        return world

    def close(self) -> None:
        if not self.owned:
            self.kube.kubectl("delete", "namespace", self.system, "--wait=false", check=False)
            return
        try:
            self.pg.close()
        finally:
            self.kube.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def prepare(self, *, install_crds: bool = True) -> None:
        if install_crds:
            self.kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
            self.kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
        self.dsn = install_postgres_procedures(self.pg, DATABASE)
        self.pg.psql(file=FAST_SQL, database=DATABASE)
        preload = self.pg.psql("SHOW shared_preload_libraries").strip()
        if "pg_stat_statements" in preload:
            self.pg.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            self.stat_statements = True
        self.kube.create_namespace(self.system)
        fast_class, secret, _config = _docs(FAST_MANIFESTS)
        sample_class = _docs(SAMPLE_CLASS)[0]
        sample_class["metadata"]["name"] = PROCEDURES["sample"][0]
        secret["metadata"]["namespace"] = self.system
        secret["stringData"] = {"dsn": self.dsn}
        apply(self.kube, fast_class, sample_class, secret)
        self.apply_config()

    # -- configuration -------------------------------------------------------------------------------

    def apply_config(self, *, rps: float = 0, concurrency: int = 8, keepalive: int = 30) -> None:
        """The OperatorConfig of bench/manifests with this run's limits (watched live by the operator)."""
        config = _docs(FAST_MANIFESTS)[2]
        config["metadata"]["namespace"] = self.system
        config["spec"]["rps"] = rps
        config["spec"]["keepalive"] = keepalive
        for dbms in config["spec"]["dbms"]:
            for endpoint in dbms["endpoints"]:
                endpoint["maxConcurrentOperations"] = concurrency
        apply(self.kube, config)

    def namespace(self, prefix: str) -> str:
        return self.kube.create_namespace(f"{prefix}-{secrets.token_hex(3)}")

    def drop_namespace(self, name: str) -> None:
        self.kube.kubectl("delete", "namespace", name, "--wait=false", check=False)

    # -- clients and subjects ------------------------------------------------------------------------

    def api(self, connections: int = 64) -> Api:
        return Api(self.kube.server, self.kube.admin_token, self.kube.pki.ca_cert, connections=connections)

    def operator(
        self,
        namespace: str,
        *,
        workers: int,
        leader_elect: bool = False,
        label: str = "operator",
        extra_args: tuple[str, ...] = (),
        src: Path | None = None,
    ) -> Subject:
        return OperatorSubject(
            label,
            kubeconfig=self.kube.kubeconfig,
            system_namespace=self.system,
            watch_namespace=namespace,
            workdir=self.workdir / f"{label}-{namespace}",
            workers=workers,
            leader_elect=leader_elect,
            log_level=self.operator_log_level,
            profile=self.profile_dir / f"{label}-{namespace}.prof" if self.profile_dir else None,
            extra_args=extra_args,
            src=src,
        )

    def raw(
        self, namespace: str, *, concurrency: int, procedures: str = "fast", peer: str = "raw"
    ) -> Subject:
        """The raw baseline, or with `peer="kopf"` the kopf operator (same spec, same procedures)."""
        _cls, endpoint, (create, rotate, delete) = PROCEDURES[procedures]
        return RawSubject(
            label=peer,
            module=PEERS[peer],
            server=self.kube.server,
            token=self.kube.admin_token,
            ca_file=str(self.kube.pki.ca_cert),
            namespace=namespace,
            dsn=self.dsn,
            concurrency=concurrency,
            procedures=(create, rotate, delete),
            endpoint=endpoint,
            workdir=self.workdir / f"{peer}-{namespace}",
        )

    # -- facts for the report ------------------------------------------------------------------------

    def components(self) -> dict[str, Callable[[], float]]:
        """CPU-seconds meters for the rest of the test bed, for the per-phase CPU budget. PostgreSQL counts
        with its backends; the driver is this process alone (every server is its descendant)."""
        meters: dict[str, Callable[[], float]] = {
            "driver": partial(_own_cpu, os.getpid()),
        }
        for name, pid in (("kube-apiserver", self.kube.apiserver.pid), ("etcd", self.kube.etcd.pid)):
            if pid is not None:
                meters[name] = partial(_own_cpu, pid)
        if self.pg.pid is not None:
            meters["postgres"] = partial(procstat.tree_cpu_seconds, self.pg.pid)
        return meters

    def machine(self) -> dict[str, Any]:
        model = ""
        try:
            for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
            mem_kib = int(Path("/proc/meminfo").read_text(encoding="utf-8").split()[1])
        except (OSError, ValueError, IndexError):
            mem_kib = 0
        try:
            kube_version = str(self.kube.version().get("gitVersion", ""))
        except Exception:
            kube_version = ""
        return {
            "cpus": os.cpu_count(),
            "cpu_model": model,
            "memory_gib": round(mem_kib / 1024 / 1024, 1),
            "kernel": platform.release(),
            "python": sys.version.split()[0],
            "postgres": self.pg.psql("SHOW server_version").strip(),
            "kubernetes": kube_version,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        }

    def pg_activity(self) -> dict[str, Any]:
        """Transactions in the bench database and, with pg_stat_statements, calls per statement there."""
        xacts = self.pg.psql(
            f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{DATABASE}'"
        ).strip()
        out: dict[str, Any] = {"xacts": int(xacts or 0), "statements": {}}
        if self.stat_statements:
            rows = self.pg.psql(
                "SELECT calls, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements s "
                f"JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '{DATABASE}'"
            )
            for line in rows.splitlines():
                calls, _, query = line.partition("|")
                if calls.strip():
                    out["statements"][query] = out["statements"].get(query, 0) + int(calls)
        return out
