"""`dbaasctl migrate-config`: the reference operator's config, refused by the API server when pasted
into an OperatorConfig, comes out as objects the API server accepts."""

from __future__ import annotations

import io
from pathlib import Path

import yaml

from dbaasctl.migrate import migrate, write
from testbed.controlplane import KubeTools

REFERENCE = """
apiVersion: config.dbaas.bedag.ch/v1
kind: OperatorConfig
health: {healthProbeBindAddress: ":8081"}
metrics: {bindAddress: "127.0.0.1:8080"}
webhook: {port: 9443}
leaderElection: {leaderElect: true, resourceName: bfa62c96.dbaas.bedag.ch}
rps: 1
keepalive: 30
dbms:
  - databaseClassName: databaseclass-sample-postgres
    endpoints:
      - name: us-postgres-test
        dsn: "postgres://postgres:Password&1@postgresql.default.svc.cluster.local:5432/postgres"
"""


def test_pasted_config_is_refused_and_the_migrated_one_accepted(
    crds: Path, control_plane: KubeTools, namespace: str
) -> None:
    old = yaml.safe_load(REFERENCE)
    body = {k: v for k, v in old.items() if k not in ("apiVersion", "kind")}
    pasted = {
        "apiVersion": "dbaasctl.io/v1",
        "kind": "OperatorConfig",
        "metadata": {"name": "dbaasctl", "namespace": namespace},
        "spec": body,
    }
    refused = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pasted), check=False
    )
    assert refused.returncode != 0
    assert "unknown field" in refused.stderr

    out = io.StringIO()
    write(migrate(old, name="dbaasctl", namespace=namespace), out)
    accepted = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=out.getvalue(), check=False
    )
    assert accepted.returncode == 0, accepted.stderr
    assert "operatorconfig.dbaasctl.io/dbaasctl created (server dry run)" in accepted.stdout
    assert "secret/dbaasctl-dsn created (server dry run)" in accepted.stdout
