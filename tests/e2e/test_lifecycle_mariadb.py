"""A DatabaseClass written for the reference operator works here with only its apiVersion changed.

The manifest below is in the reference operator's format (Go-style `{{ .Metadata.name }}` inputs,
MariaDB positional keys "0", "1", `{{ .Result.x }}` in secretFormat, the `dbaas.bedag.ch` rotate
annotation's empty-value form); the test changes nothing but `apiVersion`, then runs create, rotate and
delete against a real MariaDB.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest
import yaml

from testbed.controlplane import KubeTools
from testbed.dbms import MariaDBServer
from testbed.operator import (
    Observer,
    OperatorProcess,
    apply,
    database,
    install_mariadb_procedures,
    operator_config,
)

REFERENCE_CLASS = """
apiVersion: databaseclass.dbaas.bedag.ch/v1
kind: DatabaseClass
metadata:
  name: {name}
spec:
  driver: mariadb
  operations:
    create:
      name: dbaas_create
      inputs:
        "0": "{{{{ .Metadata.namespace }}}}"
        "1": "{{{{ .Metadata.name }}}}"
    delete:
      name: dbaas_delete
      inputs:
        "0": "{{{{ .Metadata.namespace }}}}"
        "1": "{{{{ .Metadata.name }}}}"
    rotate:
      name: dbaas_rotate
      inputs:
        "0": "{{{{ .Metadata.namespace }}}}"
        "1": "{{{{ .Metadata.name }}}}"
  secretFormat:
    username: "{{{{ .Result.username }}}}"
    password: "{{{{ .Result.password }}}}"
    port: "{{{{ .Result.port }}}}"
    dbName: "{{{{ .Result.dbName }}}}"
    server: "{{{{ .Result.host }}}}"
    dsn: "mysql://{{{{ .Result.username }}}}:{{{{ .Result.password }}}}@{{{{ .Result.host }}}}:{{{{ .Result.port }}}}/{{{{ .Result.dbName }}}}"
"""


@dataclass
class Env:
    kube: KubeTools
    obs: Observer
    operator: OperatorProcess
    maria: MariaDBServer
    ns: str


@pytest.fixture(scope="module")
def env(
    kube: KubeTools, crds: Path, mariadb: MariaDBServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    suffix = secrets.token_hex(3)
    system = kube.create_namespace(f"dbaas-sys-{suffix}")
    ns = kube.create_namespace(f"maria-{suffix}")
    dsn = install_mariadb_procedures(mariadb)
    # The sample reports @@hostname; applications here reach the server on loopback.
    mariadb.sql(
        "INSERT INTO dbaas_settings VALUES ('host', '127.0.0.1') ON DUPLICATE KEY UPDATE value = VALUES(value)",
        database="dbaas",
    )
    manifest = yaml.safe_load(REFERENCE_CLASS.format(name=f"maria-ref-{suffix}"))
    manifest["apiVersion"] = "dbaasctl.io/v1"  # the only change
    apply(
        kube,
        manifest,
        operator_config(
            "dbaasctl", system, [(manifest["metadata"]["name"], [{"name": "maria", "dsn": dsn}])]
        ),
    )
    operator = OperatorProcess(
        kube.kubeconfig, system, tmp_path_factory.mktemp("operator"), extra_args=[f"--watch-namespaces={ns}"]
    )
    operator.start()
    try:
        yield Env(kube, Observer(kube, operator), operator, mariadb, ns)
    finally:
        kube.kubectl("delete", "databases", "--all", "-n", ns, "--timeout=90s", check=False)
        operator.stop()
        kube.kubectl("delete", "namespace", ns, system, "--wait=false", check=False)
        kube.kubectl("delete", "databaseclass", manifest["metadata"]["name"], "--wait=false", check=False)


def _use(creds: dict[str, str]) -> None:
    conn = pymysql.connect(
        host=creds["server"],
        port=int(creds["port"]),
        user=creds["username"],
        password=creds["password"],
        database=creds["dbName"],
        connect_timeout=10,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS probe (id INT)")
            cur.execute("INSERT INTO probe VALUES (1)")
        conn.commit()
    finally:
        conn.close()


def can_login(creds: dict[str, str]) -> bool:
    try:
        _use(creds)
    except pymysql.err.OperationalError as exc:
        if exc.args and exc.args[0] == 1045:  # access denied
            return False
        raise
    return True


def test_reference_class_create_rotate_delete(env: Env) -> None:
    env.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(database("legacy", env.ns, "maria")))
    env.kube.kubectl("wait", "--for=condition=Ready", "-n", env.ns, "db/legacy", "--timeout=60s")
    secret = env.obs.secret(env.ns, "legacy-credentials")
    assert secret is not None
    creds = Observer.decoded(secret)
    assert set(creds) == {"username", "password", "port", "dbName", "server", "dsn"}
    assert creds["dsn"] == (
        f"mysql://{creds['username']}:{creds['password']}@{creds['server']}:{creds['port']}/{creds['dbName']}"
    )
    assert can_login(creds)

    # The reference operator's rotate request: the annotation with an empty value.
    env.kube.kubectl("annotate", "-n", env.ns, "db/legacy", "dbaasctl.io/rotate=")

    def rotated() -> dict[str, str] | None:
        db = env.obs.db(env.ns, "legacy") or {}
        if (db.get("status") or {}).get("credentialGeneration") != 2:
            return None
        if "dbaasctl.io/rotate" in (db["metadata"].get("annotations") or {}):
            return None
        return Observer.decoded(env.obs.secret(env.ns, "legacy-credentials") or {})

    new = env.obs.wait("the rotation", rotated)
    assert new["password"] != creds["password"]
    assert can_login(new)
    assert not can_login(creds)

    env.kube.kubectl("delete", "db", "-n", env.ns, "legacy", "--timeout=60s")
    databases = env.maria.sql("SHOW DATABASES").split()
    assert creds["dbName"] not in databases
    users = env.maria.sql(f"SELECT COUNT(*) FROM mysql.user WHERE User = '{creds['username']}'").strip()
    assert users == "0"
    env.obs.wait("the Secret deleted", lambda: env.obs.secret(env.ns, "legacy-credentials") is None)


def test_unwatched_namespace_is_left_alone(env: Env) -> None:
    """--watch-namespaces: a Database elsewhere is never touched, even one created earlier."""
    other = env.kube.create_namespace(f"{env.ns}-x")
    try:
        apply(env.kube, database("twin", other, "maria"))
        apply(env.kube, database("twin", env.ns, "maria"))
        env.obs.wait_db(env.ns, "twin", "True")
        assert can_login(Observer.decoded(env.obs.secret(env.ns, "twin-credentials") or {}))
        untouched = env.obs.db(other, "twin")
        assert untouched is not None
        assert "status" not in untouched
        assert not untouched["metadata"].get("finalizers")
        assert env.obs.secret(other, "twin-credentials") is None
    finally:
        env.kube.kubectl("delete", "namespace", other, "--wait=false", check=False)
