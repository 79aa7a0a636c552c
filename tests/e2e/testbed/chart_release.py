"""A Helm release of the chart on the test bed's node, and what its tests share: values that point the
in-cluster operator at the test PostgreSQL (reached from pods through the node's gateway), the
operator pods, and a teardown that leaves nothing behind for the next test."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.controlplane import REPO, ControlPlane
from testbed.dbms import PostgresServer
from testbed.leakscan import SUITE
from testbed.node import GATEWAY, POD_SUBNET, Node
from testbed.operator import Observer, postgres_class, release_databases
from testbed.polling import poll

CHART = REPO / "deploy" / "helm" / "dbaasctl"
RELEASE = "rel"
FULLNAME = "rel-dbaasctl"


@dataclass
class Release:
    kube: ControlPlane
    node: Node
    namespace: str
    user_ns: str
    values: Path

    def helm(self, *args: str, timeout: float = 360) -> str:
        return self.kube.helm(*args, "-n", self.namespace, timeout=timeout).stdout

    def pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kube.kubectl_json(
            "-n", self.namespace, "get", "pods", "-l", "app.kubernetes.io/instance=" + RELEASE
        )["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self) -> list[dict[str, Any]]:
        return [
            p
            for p in self.pods()
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]

    def leader(self) -> str:
        """The pod holding the Lease (its identity is "<pod name>_<random>")."""
        got = self.kube.kubectl(
            "-n", self.namespace, "get", "lease", f"{FULLNAME}-leader", "-o", "json", check=False
        )
        if got.returncode != 0:
            return ""
        return str(json.loads(got.stdout)["spec"].get("holderIdentity") or "").partition("_")[0]

    def collect_logs(self) -> None:
        """Every operator pod's log goes into the run-wide credential leak scan."""
        for pod in self.pods():
            name = pod["metadata"]["name"]
            SUITE.add_sink(f"operator pod {name}", self.node.pod_log(self.namespace, name, "operator"))


def admit_pod_network(server: PostgresServer) -> None:
    """The test PostgreSQL listens on loopback; pods reach it DNAT'ed from the bridge, with their own
    source address, which pg_hba must admit (password auth, as for everyone else)."""
    hba = server.datadir / "pg_hba.conf"
    line = f"host all all {POD_SUBNET} scram-sha-256\n"
    if line not in hba.read_text(encoding="utf-8"):
        with hba.open("a", encoding="utf-8") as f:
            f.write(line)
        server.psql("SELECT pg_reload_conf()")


def values_for(release_ns: str, user_ns: str, node: Node, dsn: str, **extra: Any) -> dict[str, Any]:
    repository, _, tag = node.images.operator.ref.rpartition(":")
    spec = postgres_class("unused")["spec"]
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "operator": {"watchNamespaces": [user_ns], "logLevel": "debug"},
        "operatorConfig": {
            "keepalive": 5,
            "dbms": [
                {
                    "databaseClassName": f"{release_ns}-pg",
                    "endpoints": [{"name": "pg", "dsn": dsn, "allowedNamespaces": {"names": [user_ns]}}],
                }
            ],
        },
        "databaseClasses": [{"name": f"{release_ns}-pg", "spec": spec}],
        "keepDatabaseClassesOnUninstall": False,
        # The catalogue role grants every authenticated user (every ServiceAccount included) read on
        # DatabaseClasses; a release left installed for the whole session must not lend that right to
        # the operators other tests run with exactly their own rules.
        "rbac": {"catalogReaders": []},
        **extra,
    }


def pod_dsn(node: Node, server: PostgresServer, dsn: str) -> str:
    """`dsn` as a pod sees the server: the node's gateway, forwarded to the server's loopback port."""
    admit_pod_network(server)
    inside = dsn.replace(f"@{server.host}:{server.port}/", f"@{node.forward(server.port)}:{server.port}/")
    assert GATEWAY in inside
    return inside


def tear_down(rel: Release, *namespaces: str) -> None:
    """Logs into the leak scan, the Databases dropped by the operator while it still runs, the release
    uninstalled, and `namespaces` deleted."""
    kube = rel.kube
    rel.collect_logs()
    kube.kubectl("-n", rel.user_ns, "delete", "databases", "--all", "--wait=false", check=False)
    if rel.ready_pods():  # let the operator drop what it created
        poll(lambda: not kube.kubectl_json("-n", rel.user_ns, "get", "databases")["items"], 90)
    kube.helm("uninstall", RELEASE, "-n", rel.namespace, "--wait", "--timeout=120s", check=False)
    release_databases(kube, rel.user_ns)
    for ns in namespaces:
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def ready_secret(observer: Observer, namespace: str, name: str) -> dict[str, str] | None:
    db = observer.db(namespace, name)
    ready = observer.ready_of(db)
    if not db or not ready or ready[0] != "True":
        return None
    secret = observer.secret(namespace, db["status"]["secretName"])
    return observer.decoded(secret) if secret else None
