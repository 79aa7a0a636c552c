"""`make demo-cluster`: the user's path on one machine: the image, `helm install`, a Database, its Secret.

Like `make demo`, but the operator is not a local process: the image is built from the Containerfile
(buildah, no Docker, no registry), imported into a real node's containerd, and installed with the chart;
the pod's ServiceAccount is all it has. Needs root (the node). With KEEP=1 everything stays up until
Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import yaml

from testbed.controlplane import REPO, ControlPlane
from testbed.dbms import PostgresServer
from testbed.demo import CRDS, SAMPLE, _load, _prove, _step, _wait_for_signal
from testbed.node import POD_SUBNET, Node, NodeUnavailable, build_images, unavailable_reason
from testbed.operator import Observer, install_postgres_procedures

CHART = REPO / "deploy" / "helm" / "dbaasctl"


def run_demo_cluster(keep: bool) -> int:
    reason = unavailable_reason()
    if reason:
        print(f"demo-cluster cannot run here: {reason}", file=sys.stderr)
        return 1
    cluster: ControlPlane | None = None
    node: Node | None = None
    pg: PostgresServer | None = None
    started = time.monotonic()
    try:
        _step("building the operator image from the Containerfile (cached by content hash)")
        images = build_images()
        print(f"    {images.operator.ref}", flush=True)
        _step("starting the control plane and a node (containerd, kubelet, kube-scheduler)")
        cluster = ControlPlane().start()
        cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
        node = Node(cluster, images).start()
        print(cluster.kubectl("get", "nodes", "-o", "wide").stdout, flush=True)

        _step("starting PostgreSQL (reachable from pods at the bridge gateway)")
        pg = PostgresServer().start()
        dsn = install_postgres_procedures(pg)
        with (pg.datadir / "pg_hba.conf").open("a", encoding="utf-8") as f:
            f.write(f"host all all {POD_SUBNET} scram-sha-256\n")
        pg.psql("SELECT pg_reload_conf()")
        gateway = node.forward(pg.port)
        pod_dsn = dsn.replace(f"@{pg.host}:", f"@{gateway}:")

        (db_doc,) = _load(SAMPLE / "database.yaml")
        app_ns, db_name = db_doc["metadata"]["namespace"], db_doc["metadata"]["name"]
        (cls,) = _load(SAMPLE / "databaseclass.yaml")
        cluster.create_namespace(app_ns)
        repository, _, tag = images.operator.ref.rpartition(":")
        values = {
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "operatorConfig": {
                "dbms": [
                    {
                        "databaseClassName": cls["metadata"]["name"],
                        "endpoints": [{"name": db_doc["spec"]["endpoint"], "dsn": pod_dsn}],
                    }
                ]
            },
            "databaseClasses": [{"name": cls["metadata"]["name"], "spec": cls["spec"]}],
        }
        values_file = node.workdir / "values.yaml"
        values_file.write_text(yaml.safe_dump(values), encoding="utf-8")
        _step("helm install dbaasctl deploy/helm/dbaasctl -n dbaasctl-system --create-namespace --wait")
        t = time.monotonic()
        cluster.helm(
            "install", "dbaasctl", str(CHART), "-n", "dbaasctl-system", "--create-namespace",
            "-f", str(values_file), "--wait", "--timeout=300s", timeout=360,
        )  # fmt: skip
        print(f"    operator pod Ready after {time.monotonic() - t:.0f}s", flush=True)
        print(cluster.kubectl("-n", "dbaasctl-system", "get", "pods", "-o", "wide").stdout, flush=True)

        _step(f"kubectl apply -f deploy/samples/postgres/database.yaml ({app_ns}/{db_name})")
        cluster.kubectl("apply", "-f", "-", input=json.dumps(db_doc))
        cluster.kubectl("wait", "--for=condition=Ready", "-n", app_ns, f"db/{db_name}", "--timeout=120s")
        print(cluster.kubectl("get", "db", "-n", app_ns).stdout, flush=True)
        obs = Observer(cluster)
        db = obs.db(app_ns, db_name) or {}
        secret = obs.secret(app_ns, db["status"]["secretName"])
        assert secret is not None, "the Secret is missing"
        creds = Observer.decoded(secret)
        _step(f"Secret {app_ns}/{db['status']['secretName']} has the keys: {', '.join(sorted(creds))}")
        user, rows = asyncio.run(_prove(creds))
        print(f"    connected as {user}; created table demo and inserted a row ({rows} row(s))", flush=True)
        print(f"==> demo-cluster succeeded in {time.monotonic() - started:.0f}s", flush=True)
        if keep:
            print(
                "\nKEEP=1: everything stays up until Ctrl-C. In another shell:\n"
                f"    export KUBECONFIG={cluster.kubeconfig}\n"
                "    kubectl -n dbaasctl-system logs deploy/dbaasctl\n"
                f"    kubectl get db -A; kubectl describe db -n {app_ns} {db_name}",
                flush=True,
            )
            _wait_for_signal()
            return 0
        _step("helm uninstall dbaasctl (Databases and their Secrets stay)")
        cluster.kubectl("delete", "db", "-n", app_ns, db_name, "--timeout=60s")
        cluster.helm("uninstall", "dbaasctl", "-n", "dbaasctl-system", "--wait", "--timeout=120s")
        return 0
    except (Exception, NodeUnavailable) as exc:
        print(f"demo-cluster failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        _step("cleaning up (node, control plane, PostgreSQL)")
        if node is not None:
            node.stop()
        if pg is not None:
            pg.close()
        if cluster is not None:
            cluster.stop()
