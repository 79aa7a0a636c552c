"""`kubectl get db` tells the story without `describe`: the condition message with -o wide, and a
Database whose deletion waits (no operator running) says so instead of showing Provisioned forever."""

from __future__ import annotations

import json
from pathlib import Path

from testbed.controlplane import KubeTools


def test_wide_output_and_a_deletion_that_waits(crds: Path, control_plane: KubeTools, namespace: str) -> None:
    kube = control_plane
    db = {
        "apiVersion": "dbaasctl.io/v1",
        "kind": "Database",
        "metadata": {"name": "orders-db", "namespace": namespace, "finalizers": ["dbaasctl.io/finalizer"]},
        "spec": {"endpoint": "pg-sample"},
    }
    kube.kubectl("apply", "-f", "-", input=json.dumps(db))
    status = {
        "status": {
            "secretName": "orders-db-credentials",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Provisioned",
                    "message": "database ready; credentials in Secret orders-db-credentials",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                    "observedGeneration": 1,
                }
            ],
        }
    }
    kube.kubectl(
        "-n", namespace, "patch", "db", "orders-db", "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )  # fmt: skip
    try:
        plain = kube.kubectl("-n", namespace, "get", "db").stdout.splitlines()
        assert plain[0].split() == ["NAME", "READY", "REASON", "ENDPOINT", "SECRET", "DELETING", "AGE"]
        assert "credentials in Secret" not in "\n".join(plain)
        wide = kube.kubectl("-n", namespace, "get", "db", "-o", "wide").stdout.splitlines()
        assert wide[0].split()[-1] == "MESSAGE"
        assert wide[1].endswith("database ready; credentials in Secret orders-db-credentials")

        # No operator runs: the finalizer stays, and the listing shows the wait.
        kube.kubectl("-n", namespace, "delete", "db", "orders-db", "--wait=false")
        header, row = kube.kubectl("-n", namespace, "get", "db").stdout.splitlines()
        cells = dict(zip(header.split(), row.split(), strict=True))
        assert cells["READY"] == "True"
        assert cells["DELETING"] not in ("<none>", "")
        assert cells["DELETING"][-1] in "smhd"  # an age: how long the deletion has been waiting
    finally:
        kube.kubectl(
            "-n", namespace, "patch", "db", "orders-db", "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
            check=False,
        )  # fmt: skip
