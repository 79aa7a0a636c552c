"""Rotation that an application reading its credentials from environment variables never notices, on the
real node: the chart installed with `operator.rolloutWorkloads`, the PostgreSQL A/B sample class with a
grace period, and a Deployment that opted in (`dbaasctl.io/rollout-on-rotation`). After a rotation the
operator annotates the Deployment's pod template, the Deployment rolls (new pods start with the new
login from the Secret while the old ones keep the previous login, still valid), and retire ends the
previous login once the grace period is over. A client sends a request through the Service every
100 ms the whole time (via the API server's service proxy, which picks a ready endpoint as kube-proxy
would); every request runs a query on a new connection: not one may fail.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbaasctl.controller.database.rollout import ROLLOUT_ANNOTATION, template_annotation
from testbed.chart_release import CHART, RELEASE, Release, pod_dsn, ready_secret, tear_down, values_for
from testbed.controlplane import REPO
from testbed.dbms import PostgresServer
from testbed.logins import pg_can_login
from testbed.node import GATEWAY, Node
from testbed.operator import SAMPLES, Observer, database, install_postgres_procedures
from testbed.polling import poll

APP = REPO / "tests" / "e2e" / "node" / "credentials_app.py"
#: Long enough for two pods to roll one after the other on a busy two-core machine.
GRACE_SECONDS = 90
TICK = 0.1
DATABASE = "shop"
WORKLOAD = "shop-web"


@dataclass
class Served:
    at: float
    pod: str
    user: str


@dataclass
class ServiceClient:
    """A GET through the API server's service proxy every TICK seconds, on its own thread so kubectl
    calls in the test never pause it."""

    url: str
    token: str
    context: ssl.SSLContext
    served: list[Served] = field(default_factory=list)
    failed: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def for_service(cls, kubeconfig: Path, namespace: str, service: str, port: str) -> ServiceClient:
        config = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
        cluster = config["clusters"][0]["cluster"]
        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        return cls(
            url=f"{cluster['server']}/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/",
            token=config["users"][0]["user"]["token"],
            context=ssl.create_default_context(cadata=ca),
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="service-client", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        request = urllib.request.Request(self.url, headers={"Authorization": f"Bearer {self.token}"})
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
                    body = json.loads(response.read())
                self.served.append(Served(sent, body["pod"], body["user"]))
            except urllib.error.HTTPError as exc:
                self.failed.append((sent, f"{exc.code} {exc.read()[:300].decode(errors='replace')}"))
            except Exception as exc:
                self.failed.append((sent, type(exc).__name__))
            self._stop.wait(max(0.0, TICK - (time.monotonic() - sent)))

    def users_since(self, since: float) -> set[str]:
        return {s.user for s in self.served if s.at >= since}


def install_ab_procedures(server: PostgresServer, node: Node) -> str:
    """The A/B sample functions in a database of their own; the Secrets name the node's gateway as host,
    the address pods reach the server at."""
    name = f"node_ab_{secrets.token_hex(4)}"
    dsn = install_postgres_procedures(server, name, ab=True)
    server.psql(
        f"INSERT INTO dbaas.settings VALUES ('host', '{GATEWAY}'), ('port', '{server.port}')", database=name
    )
    return pod_dsn(node, server, dsn)


def ab_class_spec() -> dict[str, Any]:
    doc = yaml.safe_load((SAMPLES / "postgres" / "databaseclass-ab.yaml").read_text(encoding="utf-8"))
    spec: dict[str, Any] = doc["spec"]
    spec["rotation"] = {"gracePeriod": f"{GRACE_SECONDS}s"}
    return spec


def workload(namespace: str, secret: str, image: str) -> list[dict[str, Any]]:
    """ConfigMap (the application's code), Deployment (opted in, rolling one pod at a time, never below
    its replica count) and Service."""
    labels = {"app": WORKLOAD}

    def from_secret(key: str) -> dict[str, Any]:
        return {"secretKeyRef": {"name": secret, "key": key}}

    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "DB_HOST", "valueFrom": from_secret("host")},
        {"name": "DB_PORT", "valueFrom": from_secret("port")},
        {"name": "DB_NAME", "valueFrom": from_secret("database")},
        {"name": "DB_USER", "valueFrom": from_secret("username")},
        {"name": "DB_PASSWORD", "valueFrom": from_secret("password")},
    ]
    container = {
        "name": "web",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["python3", "/app/credentials_app.py"],
        "env": env,
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 1,
            "timeoutSeconds": 5,
        },
        "volumeMounts": [{"name": "app", "mountPath": "/app", "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": WORKLOAD,
            "namespace": namespace,
            "annotations": {ROLLOUT_ANNOTATION: DATABASE},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "app", "configMap": {"name": f"{WORKLOAD}-code"}}],
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                },
            },
        },
    }
    code = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{WORKLOAD}-code", "namespace": namespace},
        "data": {"credentials_app.py": APP.read_text(encoding="utf-8")},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": WORKLOAD, "namespace": namespace},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    return [code, deployment, service]


@pytest.fixture
def rollout_release(
    node: Node, crds: Path, namespace: str, postgres: PostgresServer, tmp_path: Path
) -> Iterator[Release]:
    kube = node.cp
    user_ns = kube.create_namespace(f"{namespace}-u"[:63])
    dsn = install_ab_procedures(postgres, node)
    values = values_for(namespace, user_ns, node, dsn)
    values["operator"]["rolloutWorkloads"] = True
    values["databaseClasses"][0]["spec"] = ab_class_spec()
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    rel = Release(kube, node, namespace, user_ns, path)
    try:
        rel.helm("install", RELEASE, str(CHART), "-f", str(path), "--wait", "--timeout=300s")
        yield rel
    finally:
        kube.kubectl("-n", user_ns, "delete", "deployment", WORKLOAD, "--wait=false", check=False)
        tear_down(rel, user_ns)


def ready_pods(rel: Release) -> set[str]:
    pods = rel.kube.kubectl_json("-n", rel.user_ns, "get", "pods", "-l", f"app={WORKLOAD}")["items"]
    return {
        p["metadata"]["name"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    }


@pytest.mark.timeout(1200)
def test_an_opted_in_deployment_rolls_on_rotation_and_never_serves_a_failed_request(
    rollout_release: Release, postgres: PostgresServer
) -> None:
    rel, kube = rollout_release, rollout_release.kube
    ns = rel.user_ns
    observer = Observer(kube)
    kube.kubectl("apply", "-f", "-", input=json.dumps(database(DATABASE, ns, "pg")))
    first = poll(lambda: ready_secret(observer, ns, DATABASE), 120)
    assert first, f"Database never Ready: {observer.db(ns, DATABASE)}"
    db = observer.db(ns, DATABASE)
    assert db is not None
    secret_name = db["status"]["secretName"]
    generation = int(db["status"]["credentialGeneration"])

    items = workload(ns, secret_name, rel.node.images.operator.ref)
    kube.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    kube.kubectl("-n", ns, "rollout", "status", f"deployment/{WORKLOAD}", "--timeout=240s", timeout=300)
    first_pods = ready_pods(rel)
    assert len(first_pods) == 2

    client = ServiceClient.for_service(kube.kubeconfig, ns, WORKLOAD, "http")
    client.start()
    try:
        assert poll(lambda: len(client.served) >= 20, 60), client.failed[:5]
        assert client.users_since(0) == {first["username"]}

        rotated_at = time.monotonic()
        kube.kubectl("-n", ns, "annotate", "database", DATABASE, "dbaasctl.io/rotate=true", "--overwrite")
        second = poll(
            lambda: (c := ready_secret(observer, ns, DATABASE)) and c["username"] != first["username"] and c,
            120,
        )
        assert second, f"no rotation: {observer.reasons(ns, DATABASE)}"
        assert pg_can_login({**first, "host": postgres.host}), "the previous login must stay valid"

        # The operator marks the pod template; the Deployment rolls to pods that start with the new login.
        key = template_annotation(DATABASE)

        def marked() -> bool:
            deploy = kube.kubectl_json("-n", ns, "get", "deployment", WORKLOAD)
            annotations = deploy["spec"]["template"]["metadata"].get("annotations") or {}
            return annotations.get(key) == str(generation + 1)

        assert poll(marked, 60), f"pod template never annotated: {observer.reasons(ns, DATABASE)}"

        def recorded() -> bool:
            status = (observer.db(ns, DATABASE) or {}).get("status") or {}
            return bool(status.get("rolledOutGeneration") == generation + 1)

        assert poll(recorded, 30), "status.rolledOutGeneration never caught up"
        kube.kubectl("-n", ns, "rollout", "status", f"deployment/{WORKLOAD}", "--timeout=240s", timeout=300)
        rolled_at = time.monotonic()
        new_pods = ready_pods(rel)
        assert len(new_pods) == 2, new_pods
        assert not new_pods & first_pods, (first_pods, new_pods)
        assert poll(lambda: client.users_since(time.monotonic() - 2) == {second["username"]}, 60)

        # Retire ends the previous login after the grace period; nothing served by then uses it.
        assert poll(lambda: ("Normal", "Retired") in observer.reasons(ns, DATABASE), GRACE_SECONDS + 180), (
            observer.reasons(ns, DATABASE)
        )
        retired_at = time.monotonic()
        assert not pg_can_login({**first, "host": postgres.host}), "the retired login still works"
        settled = len(client.served)
        assert poll(lambda: len(client.served) >= settled + 30, 60)
    finally:
        client.stop()

    last_old = max(s.at for s in client.served if s.user == first["username"])
    print(
        f"\nroll-out on rotation: {len(client.served)} requests served, {len(client.failed)} failed; "
        f"rotation asked → roll-out complete {rolled_at - rotated_at:.1f}s; last request served with the "
        f"previous login {retired_at - last_old:.1f}s before retire; pods served: "
        f"{len({s.pod for s in client.served})}"
    )
    assert client.failed == [], client.failed[:10]
    assert {s.user for s in client.served if s.at > rolled_at} == {second["username"]}
