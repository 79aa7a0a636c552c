"""The user's path on a real node: the image built from the Containerfile, `helm install`, the operator
pod Ready, a Database Ready with working credentials, a leader hand-over under load, `helm uninstall`.

Nothing runs as a local process here: the operator is the image's entrypoint in a pod the kubelet
started, talking to the API server with its ServiceAccount's projected token, under the chart's
securityContext as the kernel enforces it.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.chart_release import CHART, RELEASE, Release, pod_dsn, ready_secret, tear_down, values_for
from testbed.dbms import PostgresServer
from testbed.leakscan import SUITE
from testbed.logins import pg_can_login
from testbed.node import Node
from testbed.operator import Observer, database, install_postgres_procedures
from testbed.polling import poll

HEALTH_PORT = 8081
#: The shortest lifetime the API server accepts for a projected ServiceAccount token.
SHORT_TOKEN_SECONDS = 600
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture
def release(
    node: Node, crds: Path, namespace: str, postgres: PostgresServer, tmp_path: Path
) -> Iterator[Release]:
    kube = node.cp
    user_ns = f"{namespace}-u"[:63]
    kube.create_namespace(user_ns)
    dsn = pod_dsn(node, postgres, install_postgres_procedures(postgres, f"node_{secrets.token_hex(4)}"))
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(values_for(namespace, user_ns, node, dsn)), encoding="utf-8")
    rel = Release(kube, node, namespace, user_ns, values)
    try:
        yield rel
    finally:
        tear_down(rel, user_ns)


def pod_process(node: Node, pod: dict[str, Any]) -> int:
    """The operator's host pid: the pod's process running `dbaasctl`."""
    for pid in node.container_pids(pod["metadata"]["uid"]):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"dbaasctl" in part for part in cmdline):
            return pid
    raise AssertionError(f"no dbaasctl process in pod {pod['metadata']['name']}")


def status_fields(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def root_mount_options(pid: int) -> set[str]:
    for line in Path(f"/proc/{pid}/mountinfo").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields[4] == "/":
            return set(fields[5].split(","))
    raise AssertionError("no root mount")


def probe(pod: dict[str, Any], path: str) -> int:
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:{HEALTH_PORT}{path}", timeout=5) as r:
        return int(r.status)


def created_events(observer: Observer, namespace: str, name: str) -> int:
    return sum(
        int((e.get("series") or {}).get("count", 1))
        for e in observer.events(namespace, name)
        if e.get("reason") == "Created"
    )


@pytest.mark.timeout(1200)
def test_helm_install_runs_the_image_and_hands_over_leadership_without_lost_work(release: Release) -> None:
    kube, node = release.kube, release.node
    observer = Observer(kube)

    # -- install: the pod becomes Ready through its own probes ------------------------------------------
    started = time.monotonic()
    release.helm("install", RELEASE, str(CHART), "-f", str(release.values), "--wait", "--timeout=300s")
    (pod,) = release.ready_pods()
    print(f"operator pod Ready {time.monotonic() - started:.1f}s after `helm install`")
    assert probe(pod, "/healthz") == 200
    assert probe(pod, "/readyz") == 200
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["image"] == node.images.operator.ref

    # -- the securityContext as the kernel applies it ------------------------------------------------------
    pid = pod_process(node, pod)
    status = status_fields(pid)
    assert status["Uid"].split() == ["65532"] * 4
    assert status["Gid"].split() == ["65532"] * 4
    assert int(status["CapEff"], 16) == 0
    assert int(status["CapBnd"], 16) == 0, "capabilities are dropped, not only unused"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2", "RuntimeDefault seccomp filter"
    assert "ro" in root_mount_options(pid)

    # -- a Database, reconciled by the in-cluster operator -------------------------------------------------
    poll(lambda: release.leader(), 60)
    assert release.leader() == pod["metadata"]["name"]
    kube.kubectl("apply", "-f", "-", input=json.dumps(database("first", release.user_ns, "pg")))
    creds = poll(lambda: ready_secret(observer, release.user_ns, "first"), 120)
    assert creds, f"Database never Ready: {observer.db(release.user_ns, 'first')}"
    assert pg_can_login(creds)
    assert "first" in node.pod_log(release.namespace, pod["metadata"]["name"], "operator")

    # -- two replicas, then the leader deleted in the middle of a storm --------------------------------
    release.helm(
        "upgrade", RELEASE, str(CHART), "-f", str(release.values), "--set", "replicaCount=2",
        "--wait", "--timeout=300s",
    )  # fmt: skip
    assert poll(lambda: len(release.ready_pods()) == 2, 120), release.pods()
    first_leader = release.leader()
    assert first_leader in {p["metadata"]["name"] for p in release.ready_pods()}
    names = [f"storm-{i:02d}" for i in range(24)]
    docs = {"apiVersion": "v1", "kind": "List", "items": [database(n, release.user_ns, "pg") for n in names]}
    kube.kubectl("apply", "-f", "-", input=json.dumps(docs))
    assert poll(lambda: any(ready_secret(observer, release.user_ns, n) for n in names), 120)
    kube.kubectl("-n", release.namespace, "delete", "pod", first_leader, "--wait=false")
    new_leader = poll(lambda: (leader := release.leader()) != first_leader and leader, 120)
    assert new_leader, "the standby never took the lease"

    done = poll(lambda: all(ready_secret(observer, release.user_ns, n) for n in names), 300)
    assert done, [n for n in names if not ready_secret(observer, release.user_ns, n)]
    for name in names:
        creds = ready_secret(observer, release.user_ns, name)
        assert creds is not None
        assert pg_can_login(creds), f"{name}: the Secret's password does not log in (duplicated create?)"
        assert created_events(observer, release.user_ns, name) == 1, observer.reasons(release.user_ns, name)
    assert poll(lambda: len(release.ready_pods()) == 2, 120), "the Deployment did not replace the deleted pod"

    # -- uninstall: the pods go, the Databases' Secrets stay --------------------------------------------
    release.collect_logs()
    release.helm("uninstall", RELEASE, "--wait", "--timeout=120s")
    assert poll(lambda: not release.pods(), 120)
    assert ready_secret(observer, release.user_ns, "first") is not None


# -- a bound ServiceAccount token that expires while the operator runs ----------------------------------


@dataclass
class ShortTokenRelease:
    release: Release
    pod: dict[str, Any]
    first_token: str
    issued: float


def token_in(pid: int) -> str:
    """The token file as the container sees it (through the process's root; /var/run is a symlink to
    /run in the image, and an absolute symlink would resolve against the host's root)."""
    root = Path(f"/proc/{pid}/root")
    for directory in (root / TOKEN_DIR.lstrip("/"), root / TOKEN_DIR.removeprefix("/var/")):
        if (directory / "token").is_file():
            return (directory / "token").read_text(encoding="utf-8")
    raise AssertionError(f"no token file under {root}")


@pytest.fixture(scope="session")
def short_token_release(
    node: Node,
    crds: Path,
    postgres: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ShortTokenRelease]:
    """A release whose pod gets a token that expires after SHORT_TOKEN_SECONDS; installed when the node's
    first test starts, checked by the session's last test, so the wait overlaps the rest of the run."""
    kube = node.cp
    namespace = kube.create_namespace(f"short-token-{secrets.token_hex(3)}")
    user_ns = kube.create_namespace(f"{namespace}-u")
    dsn = pod_dsn(node, postgres, install_postgres_procedures(postgres, f"node_{secrets.token_hex(4)}"))
    projected = {
        "name": "short-token",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": SHORT_TOKEN_SECONDS}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                    }
                },
            ]
        },
    }
    # A volume mounted at the token path replaces the default one (the ServiceAccount admission plugin
    # only adds its own when nothing is mounted there).
    values = values_for(
        namespace, user_ns, node, dsn,
        extraVolumes=[projected],
        extraVolumeMounts=[{"name": "short-token", "mountPath": TOKEN_DIR, "readOnly": True}],
        # The release lives through the rest of the suite, whose reliability tests restart the API
        # server it talks to: a lease that outlasts such a restart keeps those restarts from counting
        # as what this test is about (a token expiring must not interrupt the operator).
        terminationGracePeriodSeconds=130,
    )  # fmt: skip
    values["operator"]["leaderElection"] = {"leaseDuration": 120, "renewDeadline": 90, "retryPeriod": 2}
    path = tmp_path_factory.mktemp("short-token") / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    rel = Release(kube, node, namespace, user_ns, path)
    try:
        rel.helm("install", RELEASE, str(CHART), "-f", str(path), "--wait", "--timeout=300s")
        (pod,) = rel.ready_pods()
        first = token_in(pod_process(node, pod))
        SUITE.add(first, "short-lived projected token")
        yield ShortTokenRelease(rel, pod, first, time.time())
    finally:
        tear_down(rel, user_ns, namespace)


@pytest.fixture(autouse=True)
def _short_token_release_starts_early(request: pytest.FixtureRequest) -> None:
    """The first test of this module that has a node starts the short-token release's clock."""
    if "node" in request.fixturenames:
        request.getfixturevalue("short_token_release")


@pytest.mark.run_last
@pytest.mark.timeout(SHORT_TOKEN_SECONDS + 900)
def test_an_expired_projected_token_does_not_interrupt_the_operator(
    short_token_release: ShortTokenRelease,
) -> None:
    st = short_token_release
    rel, kube = st.release, st.release.kube
    payload = st.first_token.split(".")[1]
    expires = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
    remaining = expires - time.time()
    if remaining > 0:
        time.sleep(remaining)  # nothing to poll for: the point is that this much time has passed

    # The first token is dead for real (the API server does not extend test-bed tokens; it allows some
    # clock skew past `exp`, hence the bounded poll) ...
    def rejected() -> bool:
        who = kube.kubectl("--token", st.first_token, "auth", "whoami", check=False)
        return who.returncode != 0 and ("Unauthorized" in who.stderr or "401" in who.stderr)

    assert poll(rejected, 180, 5), "the expired token is still accepted"
    # ... the kubelet wrote a new one, and the same container kept running on it.
    (pod,) = rel.ready_pods()
    assert pod["metadata"]["uid"] == st.pod["metadata"]["uid"]
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 0, (
        f"restarted: {status.get('lastState')}\n"
        + rel.node.pod_log(rel.namespace, pod["metadata"]["name"], "operator")[-6000:]
    )
    assert token_in(pod_process(rel.node, pod)) != st.first_token

    observer = Observer(kube)
    kube.kubectl("apply", "-f", "-", input=json.dumps(database("after-expiry", rel.user_ns, "pg")))
    creds = poll(lambda: ready_secret(observer, rel.user_ns, "after-expiry"), 120)
    assert creds, f"Database never Ready: {observer.db(rel.user_ns, 'after-expiry')}"
    assert pg_can_login(creds)
    log = rel.node.pod_log(rel.namespace, pod["metadata"]["name"], "operator")
    assert "Unauthorized" not in log
    assert '"status": 401' not in log
