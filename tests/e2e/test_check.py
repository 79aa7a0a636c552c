"""`dbaasctl check` against the real sample procedures: passes as shipped, names each misspelling."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbaasctl.cli import main
from testbed.controlplane import KubeTools
from testbed.dbms import MariaDBServer, PostgresServer, _free_port
from testbed.fixtures_dbms import SAMPLES

DB = "dbaas"


@pytest.fixture(scope="module")
def servers(postgres: PostgresServer, mariadb: MariaDBServer) -> tuple[PostgresServer, MariaDBServer]:
    postgres.create_database(DB)
    postgres.psql(
        file=SAMPLES / "postgres" / "procedures.sql",
        database=DB,
        variables={"loopback_user": postgres.admin_user, "loopback_password": postgres.admin_password},
    )
    mariadb.create_database(DB)
    mariadb.sql(file=SAMPLES / "mariadb" / "procedures.sql", database=DB)
    return postgres, mariadb


def _class(dbms: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SAMPLES / dbms / "databaseclass.yaml").read_text())
    return doc


def _write(
    tmp_path: Path,
    servers: tuple[PostgresServer, MariaDBServer],
    pg_class: dict[str, Any],
    maria_class: dict[str, Any],
) -> list[str]:
    pg, maria = servers
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "maria-dsn", "namespace": "dbaasctl-system"},
        "data": {"dsn": base64.b64encode(maria.dsn_for(DB).encode()).decode()},
    }
    config = {
        "apiVersion": "dbaasctl.io/v1",
        "kind": "OperatorConfig",
        "metadata": {"name": "dbaasctl", "namespace": "dbaasctl-system"},
        "spec": {
            "dbms": [
                {
                    "databaseClassName": "postgres-sample",
                    "endpoints": [{"name": "pg", "dsn": pg.dsn_for(DB)}],
                },
                {
                    "databaseClassName": "mariadb-sample",
                    "endpoints": [{"name": "maria", "secretKeyRef": {"name": "maria-dsn", "key": "dsn"}}],
                },
            ]
        },
    }
    files = {"config.yaml": [config], "classes.yaml": [pg_class, maria_class], "secret.yaml": [secret]}
    paths = []
    for name, docs in files.items():
        (tmp_path / name).write_text(yaml.safe_dump_all(docs))
        paths += ["-f", str(tmp_path / name)]
    return paths


def test_check_passes_on_the_samples(
    tmp_path: Path, servers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["check", *_write(tmp_path, servers, _class("postgres"), _class("mariadb"))])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    lines = [line for line in out.out.splitlines()[1:] if line.strip()]
    assert len(lines) == 6, out.out
    assert all("  ok  " in line for line in lines), out.out
    assert servers[0].admin_password not in out.out + out.err


def test_check_names_a_misspelled_procedure(
    tmp_path: Path, servers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    pg_class = _class("postgres")
    pg_class["spec"]["operations"]["rotate"]["name"] = "dbaas.rotate_pasword"
    code = main(["check", *_write(tmp_path, servers, pg_class, _class("mariadb"))])
    out = capsys.readouterr()
    assert code == 1
    (line,) = [line for line in out.out.splitlines() if "PROBLEM" in line]
    assert "rotate" in line
    assert "dbaas.rotate_pasword not found" in line


def test_check_names_a_misspelled_parameter(
    tmp_path: Path, servers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    pg_class = _class("postgres")
    inputs = pg_class["spec"]["operations"]["create"]["inputs"]
    inputs["k8sNamespce"] = inputs.pop("k8sNamespace")
    code = main(["check", *_write(tmp_path, servers, pg_class, _class("mariadb"))])
    out = capsys.readouterr()
    assert code == 1
    (line,) = [line for line in out.out.splitlines() if "PROBLEM" in line]
    assert "unknown parameter(s) k8snamespce" in line
    assert "does not pass required parameter(s) k8snamespace" in line


def test_check_counts_mariadb_parameters(
    tmp_path: Path, servers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    maria_class = _class("mariadb")
    maria_class["spec"]["operations"]["delete"]["inputs"]["2"] = "{{ metadata.uid }}"
    maria_class["spec"]["operations"]["create"]["name"] = "dbaas_craete"
    code = main(["check", *_write(tmp_path, servers, _class("postgres"), maria_class)])
    out = capsys.readouterr()
    assert code == 1
    problems = [line for line in out.out.splitlines() if "PROBLEM" in line]
    assert len(problems) == 2
    assert any("dbaas_craete not found" in p for p in problems)
    assert any("takes 2 parameter(s) but the class passes 3" in p for p in problems)


def test_check_reports_unreachable_endpoint_and_missing_secret(
    tmp_path: Path, servers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _write(tmp_path, servers, _class("postgres"), _class("mariadb"))
    (tmp_path / "secret.yaml").write_text("")  # the DSN Secret is not given
    config = (tmp_path / "config.yaml").read_text()
    port = _free_port()
    (tmp_path / "config.yaml").write_text(config.replace(f":{servers[0].port}/", f":{port}/"))
    code = main(["check", *paths, "--timeout", "5"])
    out = capsys.readouterr()
    assert code == 1
    assert f"cannot reach the DBMS at 127.0.0.1:{port}" in out.out  # the host is named
    assert "DSN Secret maria-dsn key dsn not found" in out.out
    assert servers[0].admin_password not in out.out + out.err


def test_check_reads_the_live_cluster(
    servers: Any,
    control_plane: KubeTools,
    crds: Path,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`dbaasctl check --kubeconfig K -n NS`: the deployed config, classes and DSN Secrets, no YAML export."""
    pg, maria = servers
    suffix = namespace.rsplit("-", 1)[-1]
    pg_class, maria_class = _class("postgres"), _class("mariadb")
    pg_class["metadata"]["name"] = f"check-live-pg-{suffix}"
    maria_class["metadata"]["name"] = f"check-live-maria-{suffix}"
    config = {
        "apiVersion": "dbaasctl.io/v1",
        "kind": "OperatorConfig",
        "metadata": {"name": "dbaasctl", "namespace": namespace},
        "spec": {
            "dbms": [
                {
                    "databaseClassName": pg_class["metadata"]["name"],
                    "endpoints": [{"name": "pg", "secretKeyRef": {"name": "pg-dsn", "key": "dsn"}}],
                },
                {
                    "databaseClassName": maria_class["metadata"]["name"],
                    "endpoints": [{"name": "maria", "secretKeyRef": {"name": "maria-dsn", "key": "dsn"}}],
                },
            ]
        },
    }
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": {"dsn": server.dsn_for(DB)},
        }
        for name, server in (("pg-dsn", pg), ("maria-dsn", maria))
    ]
    docs = [pg_class, maria_class, config, *secrets]
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    try:
        code = main(["check", "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace])
        out = capsys.readouterr()
        assert code == 0, out.out + out.err
        lines = [line for line in out.out.splitlines()[1:] if line.strip()]
        assert len(lines) == 6, out.out
        assert all("  ok  " in line for line in lines), out.out
        assert pg.admin_password not in out.out + out.err

        # A file replaces the live object of the same name: try a changed class against the live endpoints.
        pg_class["spec"]["operations"]["rotate"]["name"] = "dbaas.rotate_pasword"
        changed = Path(control_plane.scratch) / f"changed-{suffix}.yaml"
        changed.write_text(yaml.safe_dump(pg_class))
        code = main(
            ["check", "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace, "-f", str(changed)]
        )
        out = capsys.readouterr()
        assert code == 1
        assert "dbaas.rotate_pasword not found" in out.out
        assert "warning" not in out.err  # replacing a live object is the point, not a duplicate

        assert main(["check", "--kubeconfig", str(control_plane.kubeconfig), "-n", "no-such-ns"]) == 2
        assert "no OperatorConfig in namespace no-such-ns" in capsys.readouterr().err
    finally:
        for doc in (pg_class, maria_class):
            control_plane.kubectl("delete", "databaseclass", doc["metadata"]["name"], check=False)
