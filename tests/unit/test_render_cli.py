"""`dbaasctl render`: the DBA's dry run, through the real CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dbaasctl.cli import main

MARIADB_CLASS = """
apiVersion: dbaasctl.io/v1
kind: DatabaseClass
metadata: {name: mariadb-sample}
spec:
  driver: mariadb
  operations:
    create:
      name: sp_create
      inputs:
        "1": "{{ .Parameters.department }}"
        "0": "{{ .Metadata.namespace }}_{{ .Metadata.name }}"
    delete:
      name: sp_delete
      inputs: {"0": "{{ .Metadata.namespace }}_{{ .Metadata.name }}"}
  secretFormat:
    password: "{{ .Result.password }}"
    dsn: "mysql://{{ result.username }}:{{ result.password }}@{{ endpoint.name }}/x"
"""
PG_CLASS = """
apiVersion: dbaasctl.io/v1
kind: DatabaseClass
metadata: {name: pg-sample}
spec:
  driver: postgres
  parameters:
    - {name: size, required: true, pattern: "[0-9]+"}
    - {name: tier, default: standard}
  operations:
    create: {name: dbaas.create_db, inputs: {k8s_name: "{{ metadata.name }}", size: "{{ params.size }}", uid: "{{ metadata.uid }}"}}
    rotate: {name: dbaas.rotate_db, inputs: {k8s_name: "{{ metadata.name }}", tier: "{{ params.tier }}"}}
    delete: {name: dbaas.delete_db, inputs: {k8s_name: "{{ metadata.name }}"}}
  secretFormat: {password: "{{ result.password }}"}
"""
DATABASE = """
apiVersion: dbaasctl.io/v1
kind: Database
metadata: {name: orders, namespace: shop}
spec:
  endpoint: maria-eu
  params: {department: "R&D 'x' \\\\ {{ y }}", size: "5"}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["render", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_render_mariadb_positional(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cls = write(tmp_path, "class.yaml", MARIADB_CLASS)
    db = write(tmp_path, "db.yaml", DATABASE)
    code, out, err = run_cli(capsys, "-c", str(cls), "-d", str(db))
    assert code == 0, err
    report = yaml.safe_load(out)
    create = report["operations"]["create"]
    assert create["procedure"] == "sp_create"
    assert create["inputs"] == {"0": "shop_orders", "1": "R&D 'x' \\ {{ y }}"}
    assert create["positional"] == ["shop_orders", "R&D 'x' \\ {{ y }}"]
    assert report["operations"]["delete"]["positional"] == ["shop_orders"]
    assert "rotate" not in report["operations"]
    assert "the class has no rotate operation" in report["notes"]
    assert report["secretFormat"]["resultKeys"] == ["password", "username"]
    assert report["endpoint"] == "maria-eu"


def test_render_secret_with_results_and_endpoint_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both = write(tmp_path, "both.yaml", MARIADB_CLASS + "\n---\n" + DATABASE)
    code, out, err = run_cli(
        capsys,
        "-c",
        str(both),
        "-d",
        str(both),
        "--endpoint-name",
        "maria-us",
        "-r",
        "username=u",
        "-r",
        "password=p=w",
    )
    assert code == 0, err
    report = yaml.safe_load(out)
    assert report["secretFormat"]["data"] == {"password": "p=w", "dsn": "mysql://u:p=w@maria-us/x"}


def test_render_postgres_params_and_placeholders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cls = write(tmp_path, "class.yaml", PG_CLASS)
    db = write(
        tmp_path,
        "db.yaml",
        DATABASE.replace("namespace: shop", "").replace("department: \"R&D 'x' \\\\ {{ y }}\", ", ""),
    )
    code, out, err = run_cli(capsys, "-c", str(cls), "-d", str(db))
    assert code == 0, err
    report = yaml.safe_load(out)
    assert report["database"] == "default/orders"
    assert report["params"] == {"size": "5", "tier": "standard"}
    assert report["operations"]["create"]["inputs"]["uid"] == "00000000-0000-0000-0000-000000000000"
    assert report["operations"]["rotate"]["inputs"] == {"k8s_name": "orders", "tier": "standard"}
    assert "positional" not in report["operations"]["create"]
    assert any("namespace" in note for note in report["notes"])


@pytest.mark.parametrize(
    ("class_text", "db_text", "message"),
    [
        (MARIADB_CLASS.replace("{{ .Parameters.department }}", "{{ .Parameters.dept }}"), DATABASE,
         'operations.create: input "1": params.dept is not defined'),
        (MARIADB_CLASS.replace('"1":', '"2":'), DATABASE, "missing '1'"),
        (MARIADB_CLASS.replace("{{ .Result.password }}", "{{ ''.__class__ }}"), DATABASE, "not allowed in the template sandbox"),
        (PG_CLASS, DATABASE, "params: unknown params department"),
        (PG_CLASS, DATABASE.replace('size: "5"', 'size: "five"'), "params.size does not match"),
        (MARIADB_CLASS.replace("driver: mariadb", "driver: oracle"), DATABASE, "invalid DatabaseClass"),
    ],
)  # fmt: skip
def test_render_errors_exit_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], class_text: str, db_text: str, message: str
) -> None:
    cls = write(tmp_path, "class.yaml", class_text)
    db = write(tmp_path, "db.yaml", db_text)
    code, out, err = run_cli(capsys, "-c", str(cls), "-d", str(db))
    assert code == 1
    assert out == ""
    assert message in err


@pytest.mark.parametrize(
    ("db_text", "extra", "message"),
    [
        (None, [], "nope.yaml: No such file or directory"),
        ("kind: ConfigMap\n", [], "no Database document found"),
        ("spec: [unclosed", [], "not valid YAML"),
        (DATABASE, ["-r", "novalue"], "--result expects KEY=VALUE"),
    ],
    ids=["missing", "no-document", "not-yaml", "bad-result"],
)
def test_render_input_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], db_text: str | None, extra: list[str], message: str
) -> None:
    """Input errors exit 2, as `--help` documents; a class that cannot be rendered exits 1."""
    cls = write(tmp_path, "class.yaml", MARIADB_CLASS)
    db = tmp_path / "nope.yaml" if db_text is None else write(tmp_path, "db.yaml", db_text)
    code, out, err = run_cli(capsys, "-c", str(cls), "-d", str(db), *extra)
    assert code == 2
    assert out == ""
    assert message in err


def test_version_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("dbaasctl ")


def test_render_class_without_secret_format_uses_service_binding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_format = PG_CLASS.replace('  secretFormat: {password: "{{ result.password }}"}\n', "")
    assert "secretFormat" not in no_format
    cls = write(tmp_path, "class.yaml", no_format)
    db = write(tmp_path, "db.yaml", DATABASE.replace("department: \"R&D 'x' \\\\ {{ y }}\", ", ""))
    code, out, err = run_cli(
        capsys, "-c", str(cls), "-d", str(db), "-r", "user=app", "-r", "password=pw", "-r", "dbName=d"
    )
    assert code == 0, err
    secret = yaml.safe_load(out)["secretFormat"]
    assert secret["layout"].startswith("Service Binding")
    assert secret["data"]["type"] == "postgresql"
    assert secret["data"]["username"] == "app"
    assert secret["data"]["database"] == "d"
    code, _, err = run_cli(capsys, "-c", str(cls), "-d", str(db), "-r", "user=app")
    assert code == 1
    assert "no password" in err
