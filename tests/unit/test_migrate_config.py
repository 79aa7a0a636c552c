"""`dbaasctl migrate-config`: a kubernetes-dbaas config file becomes an OperatorConfig plus run flags."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbaasctl.api.operatorconfig import OperatorConfig
from dbaasctl.cli import main
from dbaasctl.migrate import MigrationError, migrate, write
from dbaasctl.settings import parse_args

REFERENCE = {
    "apiVersion": "config.dbaas.bedag.ch/v1",
    "kind": "OperatorConfig",
    "health": {"healthProbeBindAddress": ":8081", "readinessEndpointName": "readyz"},
    "metrics": {"bindAddress": "127.0.0.1:8080"},
    "webhook": {"port": 9443},
    "leaderElection": {
        "leaderElect": True,
        "resourceName": "bfa62c96.dbaas.bedag.ch",
        "leaseDuration": "30s",
        "renewDeadline": "20s",
        "retryPeriod": "4s",
    },
    "rps": 1,
    "keepalive": 30,
    "dbms": [
        {
            "databaseClassName": "databaseclass-sample-postgres",
            "endpoints": [{"name": "us-postgres-test", "dsn": "postgres://u:Pa%26ss@pg:5432/postgres"}],
        },
        {
            "databaseClassName": "databaseclass-sample-mariadb",
            "endpoints": [{"name": "us-mariadb-test", "secretKeyRef": {"name": "maria", "key": "dsn"}}],
        },
    ],
}


def _wrapped() -> dict[str, Any]:
    """What users tried: the old keys pasted under the spec of a dbaasctl OperatorConfig."""
    body = {k: v for k, v in REFERENCE.items() if k not in ("apiVersion", "kind")}
    return {"apiVersion": "dbaasctl.io/v1", "kind": "OperatorConfig", "metadata": {"name": "x"}, "spec": body}


def _configmap() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "data": {"config.yaml": yaml.safe_dump(REFERENCE)}}


@pytest.mark.parametrize("doc", [REFERENCE, _wrapped(), _configmap()], ids=["bare", "wrapped", "configmap"])
def test_migrates_every_form(tmp_path: Path, doc: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["migrate-config", str(path), "-n", "dbaas"]) == 0
    out = capsys.readouterr().out
    docs = list(yaml.safe_load_all(out))
    secret, config = docs
    assert secret["kind"] == "Secret"
    assert secret["stringData"] == {"us-postgres-test": "postgres://u:Pa%26ss@pg:5432/postgres"}
    model = OperatorConfig.model_validate(config)
    assert model.metadata.namespace == "dbaas"
    assert model.spec.rps == 1
    endpoints = dict((ep.name, ep) for _, ep in model.spec.endpoints())
    assert endpoints["us-postgres-test"].dsn is None  # moved out of the OperatorConfig
    assert endpoints["us-postgres-test"].secret_key_ref is not None
    assert endpoints["us-mariadb-test"].secret_key_ref is not None
    assert "health" not in config["spec"]
    assert "webhook" not in config["spec"]

    (run_line,) = [line for line in out.splitlines() if line.startswith("#   dbaasctl run ")]
    flags = run_line.removeprefix("#   dbaasctl run ").split()
    settings = parse_args(flags, environ={})  # the printed flags are accepted by `dbaasctl run`
    assert settings.health_addr == ":8081"
    assert settings.metrics_addr == "127.0.0.1:8080"
    assert settings.leader_elect is True
    assert settings.leader_election_id == "bfa62c96.dbaas.bedag.ch"
    assert (settings.lease_duration, settings.renew_deadline, settings.retry_period) == (30, 20, 4)
    assert settings.namespace == "dbaas"
    notes = [line for line in out.splitlines() if line.startswith("# note:")]
    assert any("webhook.port dropped" in n and "CEL" in n for n in notes)
    assert any("health.readinessEndpointName dropped" in n for n in notes)


def test_unknown_keys_are_named() -> None:
    doc = {**REFERENCE, "mystery": {"knob": 1}}
    out = io.StringIO()
    write(migrate(doc, name="dbaasctl", namespace="ns"), out)
    assert "# note: mystery.knob dropped: unknown key" in out.getvalue()


def test_not_a_reference_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(MigrationError, match="no dbms list"):
        migrate({"health": {}}, name="a", namespace="b")
    path = tmp_path / "x.yaml"
    path.write_text("a: [\n")
    assert main(["migrate-config", str(path)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["migrate-config", str(tmp_path / "missing.yaml")]) == 2
