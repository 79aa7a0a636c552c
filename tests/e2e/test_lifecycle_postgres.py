"""The Database lifecycle end to end: real control plane, real PostgreSQL, `dbaasctl run` as a subprocess.

One operator process serves the whole module (it watches only this module's namespaces); every test uses
its own Database names. Each check reads what a user would read: `kubectl`, the Secret, a login with the
credentials, the DBMS catalog.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from testbed.controlplane import KubeTools
from testbed.dbms import PostgresServer
from testbed.logins import pg_can_login
from testbed.operator import (
    Observer,
    OperatorProcess,
    apply,
    database,
    install_postgres_procedures,
    operator_config,
    postgres_class,
    release_databases,
)

BINDING_KEYS = {"type", "provider", "host", "port", "username", "password", "database", "uri"}


@dataclass
class Env:
    kube: KubeTools
    obs: Observer
    operator: OperatorProcess
    pg: PostgresServer
    dsn: str
    system: str
    apps: list[str]
    suffix: str
    classes: dict[str, dict[str, Any]]
    endpoints: dict[str, list[dict[str, Any]]]
    seen_passwords: set[str] = field(default_factory=set)

    def apply_config(self) -> None:
        apply(self.kube, operator_config("dbaasctl", self.system, list(self.endpoints.items())))

    def create(self, name: str, namespace: str, endpoint: str, **kwargs: Any) -> None:
        apply(self.kube, database(name, namespace, endpoint, **kwargs))

    def creds(self, namespace: str, secret: str) -> dict[str, str]:
        doc = self.obs.secret(namespace, secret)
        assert doc is not None, f"Secret {namespace}/{secret} missing"
        data = Observer.decoded(doc)
        if data.get("password"):
            self.seen_passwords.add(data["password"])
        return data

    def generation(self, namespace: str, name: str) -> int:
        db = self.obs.db(namespace, name) or {}
        return int((db.get("status") or {}).get("credentialGeneration") or 0)

    def wait_generation(
        self, namespace: str, name: str, at_least: int, timeout: float = 60
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            db = self.obs.db(namespace, name)
            status = (db or {}).get("status") or {}
            ready = Observer.ready_of(db)
            if int(status.get("credentialGeneration") or 0) >= at_least and ready and ready[0] == "True":
                return db
            return None

        result: dict[str, Any] = self.obs.wait(
            f"{namespace}/{name} credentialGeneration>={at_least}", check, timeout
        )
        return result


async def _write(conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE TABLE IF NOT EXISTS probe (id int)")
    await conn.execute("INSERT INTO probe VALUES (1)")


async def _select_one(uri: str) -> int:
    conn = await asyncpg.connect(dsn=uri, timeout=10)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


def can_login(creds: dict[str, str]) -> bool:
    """Log in and write, as the application would; False when the password is refused."""
    return pg_can_login(creds, _write)


@pytest.fixture(scope="module")
def env(
    kube: KubeTools, crds: Path, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    suffix = secrets.token_hex(3)
    system = kube.create_namespace(f"dbaas-sys-{suffix}")
    apps = [kube.create_namespace(f"app{i}-{suffix}") for i in range(3)]
    dsn = install_postgres_procedures(postgres)
    classes = {
        "main": postgres_class(f"pg-{suffix}"),
        "fast": postgres_class(f"pg-fast-{suffix}", rotation_interval="2s"),
        "params": postgres_class(
            f"pg-params-{suffix}",
            parameters=[{"name": "tier", "required": True, "pattern": "^(small|large)$"}],
        ),
        "badfmt": postgres_class(
            f"pg-badfmt-{suffix}",
            secret_format={"password": "{{ result.password }}", "x": "{{ result.nope }}"},
        ),
        "tmpl": postgres_class(
            f"pg-tmpl-{suffix}",
            create_inputs={"k8sNamespace": "{{ metadata.namespace }}", "k8sName": "{{ params.prefix }}"},
        ),
    }
    wrong_dsn = postgres.dsn_for("dbaas", password="not-the-password")
    secrets_ = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": system},
            "stringData": {"dsn": value},
        }
        for name, value in (("pg-dsn", dsn), ("pg-dsn-bad", wrong_dsn))
    ]
    endpoints = {
        f"pg-{suffix}": [
            {"name": "pg", "secretKeyRef": {"name": "pg-dsn", "key": "dsn"}},
            {"name": "pg-dsn2", "secretKeyRef": {"name": "pg-dsn-bad", "key": "dsn"}},
            {
                "name": "pg-restricted",
                "dsn": dsn,
                "allowedNamespaces": {"selector": {"matchLabels": {"e2e.dbaasctl.io/tenant": "yes"}}},
            },
        ],
        f"pg-fast-{suffix}": [{"name": "pg-fast", "dsn": dsn}],
        f"pg-params-{suffix}": [{"name": "pg-params", "dsn": dsn}],
        f"pg-tmpl-{suffix}": [{"name": "pg-tmpl", "dsn": dsn}],
        f"pg-missing-{suffix}": [{"name": "pg-noclass", "dsn": dsn}],
        f"pg-badfmt-{suffix}": [{"name": "pg-badfmt", "dsn": dsn}],
    }
    apply(kube, *classes.values(), *secrets_)
    operator = OperatorProcess(
        kube.kubeconfig,
        system,
        tmp_path_factory.mktemp("operator"),
        extra_args=[f"--watch-namespaces={','.join(apps)}"],
    )
    environment = Env(
        kube, Observer(kube, operator), operator, postgres, dsn, system, apps, suffix, classes, endpoints
    )
    environment.apply_config()
    operator.start()
    try:
        yield environment
    finally:
        for ns in apps:
            kube.kubectl("delete", "databases", "--all", "-n", ns, "--timeout=90s", check=False)
        operator.stop()
        for ns in apps:
            release_databases(kube, ns)
        for ns in [*apps, system]:
            kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        for cls in [*classes.values(), {"metadata": {"name": f"pg-missing-{suffix}"}}]:
            kube.kubectl("delete", "databaseclass", cls["metadata"]["name"], "--wait=false", check=False)


def _pg_catalog(env: Env, sql: str) -> str:
    return env.pg.psql(sql, database="dbaas").strip()


# -- the happy path ------------------------------------------------------------------------------------


def test_create_becomes_ready_with_working_credentials(env: Env) -> None:
    ns = env.apps[0]
    creates_before = env.operator.metric(
        "dbaasctl_database_operations_total", {"operation": "create", "result": "success"}
    )
    env.create("orders", ns, "pg")
    env.kube.kubectl("wait", "--for=condition=Ready", "-n", ns, "db/orders", "--timeout=60s")

    table = env.kube.kubectl("get", "db", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "REASON", "ENDPOINT", "SECRET", "DELETING", "AGE"]
    assert table[1].split()[:5] == ["orders", "True", "Provisioned", "pg", "orders-credentials"]

    db = env.obs.db(ns, "orders")
    assert db is not None
    status = db["status"]
    assert status["observedGeneration"] == db["metadata"]["generation"]
    assert status["secretName"] == "orders-credentials"
    assert status["endpoint"] == "pg"
    assert status["provisionedAt"]
    assert "dbaasctl.io/finalizer" in db["metadata"]["finalizers"]

    secret = env.obs.secret(ns, "orders-credentials")
    assert secret is not None
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "dbaasctl"
    assert secret["metadata"]["labels"]["dbaasctl.io/database"] == "orders"
    (owner,) = secret["metadata"]["ownerReferences"]
    assert owner["uid"] == db["metadata"]["uid"]
    assert owner["controller"] is True
    creds = env.creds(ns, "orders-credentials")
    assert creds.keys() >= BINDING_KEYS  # no secretFormat in the class: Service Binding layout
    assert creds["type"] == "postgresql"
    assert creds["provider"] == "postgres"
    assert can_login(creds)
    # The URI is a complete connection string too.
    assert asyncio.run(_select_one(creds["uri"])) == 1
    assert _pg_catalog(env, f"SELECT count(*) FROM pg_database WHERE datname = '{creds['database']}'") == "1"

    reasons = env.obs.reasons(ns, "orders")
    assert ("Normal", "Created") in reasons
    creates_after = env.operator.metric(
        "dbaasctl_database_operations_total", {"operation": "create", "result": "success"}
    )
    assert (creates_after or 0) - (creates_before or 0) == 1  # create ran once, not once per wake-up


def test_operator_config_status_shows_endpoint_health(env: Env) -> None:
    def healthy() -> dict[str, Any] | None:
        config = env.kube.kubectl_json("get", "operatorconfig", "-n", env.system, "dbaasctl")
        endpoints = {e["name"]: e for e in (config.get("status") or {}).get("endpoints") or []}
        return endpoints if endpoints.get("pg", {}).get("healthy") is True else None

    endpoints = env.obs.wait("endpoint pg healthy in the OperatorConfig status", healthy)
    assert endpoints["pg-noclass"]["healthy"] is False
    assert "not found" in endpoints["pg-noclass"]["lastError"]


def test_operator_config_status_last_check_time_follows_checks_and_tls_is_reported(env: Env) -> None:
    """lastCheckTime is the last check (refreshed at a bounded interval), not the last transition."""

    def config() -> dict[str, Any]:
        return env.kube.kubectl_json("get", "operatorconfig", "-n", env.system, "dbaasctl")

    def pg_entry() -> dict[str, Any] | None:
        entries = {e["name"]: e for e in (config().get("status") or {}).get("endpoints") or []}
        entry = entries.get("pg")
        return entry if entry and entry.get("healthy") is True and entry.get("lastCheckTime") else None

    first = env.obs.wait("endpoint pg healthy with a lastCheckTime", pg_entry)

    def advanced() -> dict[str, Any] | None:
        entry = pg_entry()
        return entry if entry and entry["lastCheckTime"] > first["lastCheckTime"] else None

    later = env.obs.wait("lastCheckTime to advance while pg stays healthy", advanced, timeout=120)
    assert later["lastTransitionTime"] == first["lastTransitionTime"]
    assert later["tls"] == "plaintext"  # the test bed's session PostgreSQL runs without TLS
    conditions = {c["type"]: c for c in config()["status"]["conditions"]}
    assert conditions["Encrypted"]["status"] == "False"
    assert conditions["Encrypted"]["reason"] == "PlaintextEndpoints"
    assert "pg" in conditions["Encrypted"]["message"]


# -- rotation ------------------------------------------------------------------------------------------


def test_rotate_by_annotation_true(env: Env) -> None:
    ns = env.apps[0]
    env.create("rot-true", ns, "pg")
    env.obs.wait_db(ns, "rot-true", "True")
    old = env.creds(ns, "rot-true-credentials")
    env.kube.kubectl("annotate", "-n", ns, "db/rot-true", "dbaasctl.io/rotate=true")
    db = env.wait_generation(ns, "rot-true", 2)
    env.obs.wait(
        "the annotation to be removed",
        lambda: (
            "dbaasctl.io/rotate" not in (env.obs.db(ns, "rot-true") or {})["metadata"].get("annotations", {})
        ),
    )
    assert Observer.ready_of(db)[:2] == ("True", "Rotated")  # type: ignore[index]
    new = env.creds(ns, "rot-true-credentials")
    assert new["password"] != old["password"]
    assert can_login(new)
    assert not can_login(old)
    assert env.generation(ns, "rot-true") == 2


def test_rotate_by_token_once_per_value(env: Env) -> None:
    ns = env.apps[0]
    env.create("rot-token", ns, "pg")
    env.obs.wait_db(ns, "rot-token", "True")
    first = env.creds(ns, "rot-token-credentials")
    env.kube.kubectl("annotate", "-n", ns, "db/rot-token", "dbaasctl.io/rotate=2024-01")
    db = env.wait_generation(ns, "rot-token", 2)
    assert db["status"]["rotationToken"] == "2024-01"
    assert db["metadata"]["annotations"]["dbaasctl.io/rotate"] == "2024-01"  # left for GitOps tools
    second = env.creds(ns, "rot-token-credentials")
    assert can_login(second)
    assert not can_login(first)
    # Unrelated changes wake the reconciler but must not rotate again for the same token.
    env.kube.kubectl("label", "-n", ns, "db/rot-token", "touched=yes")
    env.kube.kubectl("annotate", "--overwrite", "-n", ns, "db/rot-token", "dbaasctl.io/rotate=2024-02")
    db = env.wait_generation(ns, "rot-token", 3)
    assert db["status"]["rotationToken"] == "2024-02"
    assert db["status"]["credentialGeneration"] == 3
    third = env.creds(ns, "rot-token-credentials")
    assert can_login(third)
    assert not can_login(second)


def test_rotate_when_secret_deleted(env: Env) -> None:
    ns = env.apps[0]
    env.create("rot-del", ns, "pg")
    env.obs.wait_db(ns, "rot-del", "True")
    old = env.creds(ns, "rot-del-credentials")
    env.kube.kubectl("delete", "secret", "-n", ns, "rot-del-credentials")
    env.wait_generation(ns, "rot-del", 2)
    new = env.obs.wait("the Secret to come back", lambda: env.obs.secret(ns, "rot-del-credentials"))
    new_creds = env.creds(ns, "rot-del-credentials")
    assert new["metadata"]["ownerReferences"][0]["name"] == "rot-del"
    assert new_creds["password"] != old["password"]
    assert can_login(new_creds)
    assert not can_login(old)
    db = env.obs.db(ns, "rot-del")
    assert db is not None
    assert db["status"]["provisionedAt"]


def test_edited_secret_is_rotated_and_user_metadata_survives(env: Env) -> None:
    ns = env.apps[0]
    env.create("drift", ns, "pg")
    env.obs.wait_db(ns, "drift", "True")
    old = env.creds(ns, "drift-credentials")
    env.kube.kubectl("label", "-n", ns, "secret/drift-credentials", "team=payments")
    env.kube.kubectl("annotate", "-n", ns, "secret/drift-credentials", "reloader.example.com/match=true")
    env.kube.kubectl(
        "patch", "secret", "-n", ns, "drift-credentials", "--type=merge",
        "-p", json.dumps({"stringData": {"password": "tampered", "extra": "mine"}}),
    )  # fmt: skip
    env.wait_generation(ns, "drift", 2)
    secret = env.obs.wait(
        "the Secret rewritten",
        lambda: (
            (s := env.obs.secret(ns, "drift-credentials"))
            and Observer.decoded(s)["password"] not in ("tampered", old["password"])
            and s
        ),
    )
    new = env.creds(ns, "drift-credentials")
    assert secret["metadata"]["labels"]["team"] == "payments"
    assert secret["metadata"]["annotations"]["reloader.example.com/match"] == "true"
    assert new["extra"] == "mine"  # a key the user added is theirs
    assert can_login(new)
    assert not can_login(old)


def test_token_present_at_creation_does_not_rotate(env: Env) -> None:
    """A GitOps manifest carries its rotate token from day one: fresh credentials already satisfy it."""
    ns = env.apps[0]
    env.create("gitops", ns, "pg", annotations={"dbaasctl.io/rotate": "v1"})
    db = env.obs.wait_db(ns, "gitops", "True", "Provisioned")
    assert db["status"]["rotationToken"] == "v1"
    assert db["status"]["credentialGeneration"] == 1
    assert ("Normal", "Rotated") not in env.obs.reasons(ns, "gitops")


def test_our_labels_removed_from_the_secret_are_restored(env: Env) -> None:
    ns = env.apps[0]
    env.create("relabel", ns, "pg")
    env.obs.wait_db(ns, "relabel", "True")
    before = env.creds(ns, "relabel-credentials")
    env.kube.kubectl("label", "-n", ns, "secret/relabel-credentials", "app.kubernetes.io/managed-by-")
    env.obs.wait_event(ns, "relabel", "SecretRepaired")
    secret = env.obs.secret(ns, "relabel-credentials")
    assert secret is not None
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "dbaasctl"
    assert Observer.decoded(secret)["password"] == before["password"]  # labels only: no rotation
    assert env.generation(ns, "relabel") == 1


def test_scheduled_rotation(env: Env) -> None:
    ns = env.apps[1]
    env.create("sched", ns, "pg-fast")
    env.obs.wait_db(ns, "sched", "True")
    first = env.creds(ns, "sched-credentials")
    db = env.wait_generation(ns, "sched", 3, timeout=90)
    assert db["status"]["lastRotationTime"]
    # Rotations keep coming every 2s: read and use the current credentials in one go, retrying if a
    # rotation slipped in between.
    env.obs.wait("the current credentials to work", lambda: can_login(env.creds(ns, "sched-credentials")))
    assert not can_login(first)
    assert ("Normal", "Rotated") in env.obs.reasons(ns, "sched")
    env.kube.kubectl("delete", "db", "-n", ns, "sched", "--timeout=60s")


# -- deletion ------------------------------------------------------------------------------------------


def test_delete_drops_database_login_and_secret(env: Env) -> None:
    ns = env.apps[0]
    env.create("gone", ns, "pg")
    env.obs.wait_db(ns, "gone", "True")
    creds = env.creds(ns, "gone-credentials")
    env.kube.kubectl("delete", "db", "-n", ns, "gone", "--timeout=60s")
    assert env.obs.db(ns, "gone") is None
    assert _pg_catalog(env, f"SELECT count(*) FROM pg_database WHERE datname = '{creds['database']}'") == "0"
    assert _pg_catalog(env, f"SELECT count(*) FROM pg_roles WHERE rolname = '{creds['username']}'") == "0"
    env.obs.wait("the Secret deleted", lambda: env.obs.secret(ns, "gone-credentials") is None)


def test_retain_keeps_database_and_secret(env: Env) -> None:
    ns = env.apps[0]
    env.create("kept", ns, "pg", deletion_policy="Retain")
    env.obs.wait_db(ns, "kept", "True")
    creds = env.creds(ns, "kept-credentials")
    env.kube.kubectl("delete", "db", "-n", ns, "kept", "--timeout=60s")
    secret = env.obs.secret(ns, "kept-credentials")
    assert secret is not None
    assert not secret["metadata"].get("ownerReferences")
    assert "app.kubernetes.io/managed-by" not in (secret["metadata"].get("labels") or {})
    assert Observer.decoded(secret)["password"] == creds["password"]
    assert can_login(creds)
    assert ("Normal", "Retained") in env.obs.reasons(ns, "kept")
    # Released for good: nothing garbage-collects or rewrites it later.
    env.kube.kubectl("delete", "secret", "-n", ns, "kept-credentials")
    env.pg.psql(f"SELECT dbaas.drop_database('{ns}', 'kept')", database="dbaas")


def test_same_name_in_two_namespaces_gives_two_databases(env: Env) -> None:
    a, b = env.apps[0], env.apps[1]
    env.create("twin", a, "pg")
    env.create("twin", b, "pg")
    env.obs.wait_db(a, "twin", "True")
    env.obs.wait_db(b, "twin", "True")
    ca, cb = env.creds(a, "twin-credentials"), env.creds(b, "twin-credentials")
    assert ca["database"] != cb["database"]
    assert ca["username"] != cb["username"]
    assert can_login(ca)
    assert can_login(cb)
    crossed = {**ca, "database": cb["database"]}
    with pytest.raises(asyncpg.PostgresError):
        can_login(crossed)  # one tenant cannot open the other's database
    env.kube.kubectl("delete", "db", "-n", a, "twin", "--timeout=60s")
    assert can_login(cb)  # deleting one leaves the other alone


# -- admission failures and their recovery ------------------------------------------------------------


def _no_dbms_call(env: Env, ns: str, name: str) -> None:
    reasons = {r for _, r in env.obs.reasons(ns, name)}
    assert not reasons & {"Creating", "Created"}, reasons


def test_endpoint_missing_then_declared(env: Env) -> None:
    ns = env.apps[1]
    env.create("late", ns, "pg-later")
    db = env.obs.wait_db(ns, "late", "False", "EndpointNotFound")
    assert "pg-later" in Observer.ready_of(db)[2]  # type: ignore[index]
    env.obs.wait_event(ns, "late", "EndpointNotFound")
    assert env.obs.events(ns, "late")[-1]["type"] == "Warning"
    _no_dbms_call(env, ns, "late")
    assert "dbaasctl.io/finalizer" not in (db["metadata"].get("finalizers") or [])
    env.endpoints[f"pg-{env.suffix}"] = [
        *env.endpoints[f"pg-{env.suffix}"],
        {"name": "pg-later", "dsn": env.dsn},
    ]
    env.apply_config()
    env.obs.wait_db(ns, "late", "True", "Provisioned")
    assert can_login(env.creds(ns, "late-credentials"))


def test_tls_policy_refuses_a_plaintext_endpoint_then_relaxed(env: Env) -> None:
    ns = env.apps[1]
    key = f"pg-{env.suffix}"
    env.endpoints[key] = [
        *env.endpoints[key],
        {"name": "pg-strict", "dsn": env.dsn, "tls": {"minimum": "encrypted"}},
    ]
    env.apply_config()
    env.create("strict", ns, "pg-strict")
    db = env.obs.wait_db(ns, "strict", "False", "EndpointUnavailable")
    assert "TlsRefused" in Observer.ready_of(db)[2]  # type: ignore[index]
    _no_dbms_call(env, ns, "strict")

    def refused() -> dict[str, Any] | None:
        config = env.kube.kubectl_json("get", "operatorconfig", "-n", env.system, "dbaasctl")
        conditions = {c["type"]: c for c in (config.get("status") or {}).get("conditions") or []}
        encrypted = conditions.get("Encrypted") or {}
        return encrypted if encrypted.get("reason") == "TlsPolicyRefused" else None

    condition = env.obs.wait("Encrypted=False TlsPolicyRefused on the OperatorConfig", refused)
    assert condition["status"] == "False"
    assert "pg-strict (plaintext, needs encrypted)" in condition["message"]
    env.endpoints[key] = [
        {**e, "tls": {"minimum": "plaintext"}} if e["name"] == "pg-strict" else e for e in env.endpoints[key]
    ]
    env.apply_config()
    env.obs.wait_db(ns, "strict", "True", "Provisioned", timeout=120)


def test_class_missing_then_created(env: Env) -> None:
    ns = env.apps[1]
    env.create("classless", ns, "pg-noclass")
    env.obs.wait_db(ns, "classless", "False", "ClassNotFound")
    _no_dbms_call(env, ns, "classless")
    apply(env.kube, postgres_class(f"pg-missing-{env.suffix}"))
    env.obs.wait_db(ns, "classless", "True")
    assert can_login(env.creds(ns, "classless-credentials"))


def test_namespace_not_allowed_then_labelled(env: Env) -> None:
    ns = env.apps[2]
    env.create("tenant", ns, "pg-restricted")
    db = env.obs.wait_db(ns, "tenant", "False", "NamespaceNotAllowed")
    assert ns in Observer.ready_of(db)[2]  # type: ignore[index]
    _no_dbms_call(env, ns, "tenant")
    env.kube.kubectl("label", "namespace", ns, "e2e.dbaasctl.io/tenant=yes")
    env.obs.wait_db(ns, "tenant", "True")


def test_bad_params_then_class_relaxed(env: Env) -> None:
    ns = env.apps[1]
    env.create("sized", ns, "pg-params", params={"tier": "huge"})
    env.create("unsized", ns, "pg-params")
    sized = env.obs.wait_db(ns, "sized", "False", "InvalidParameters")
    unsized = env.obs.wait_db(ns, "unsized", "False", "InvalidParameters")
    assert "params.tier does not match" in Observer.ready_of(sized)[2]  # type: ignore[index]
    assert "params.tier is required" in Observer.ready_of(unsized)[2]  # type: ignore[index]
    assert "huge" not in Observer.ready_of(sized)[2]  # type: ignore[index] # values are never echoed
    _no_dbms_call(env, ns, "sized")
    relaxed = postgres_class(
        f"pg-params-{env.suffix}",
        parameters=[{"name": "tier", "required": True, "pattern": "^(small|large|huge)$"}],
    )
    apply(env.kube, relaxed)
    env.obs.wait_db(ns, "sized", "True")
    assert Observer.ready_of(env.obs.db(ns, "unsized"))[:2] == ("False", "InvalidParameters")  # type: ignore[index]


def test_template_error_then_class_fixed(env: Env) -> None:
    ns = env.apps[1]
    env.create("templated", ns, "pg-tmpl")
    db = env.obs.wait_db(ns, "templated", "False", "TemplateError")
    assert "params.prefix" in Observer.ready_of(db)[2]  # type: ignore[index]
    _no_dbms_call(env, ns, "templated")
    apply(env.kube, postgres_class(f"pg-tmpl-{env.suffix}"))
    env.obs.wait_db(ns, "templated", "True")


def test_secret_format_error_after_create_is_repaired_without_a_second_call(env: Env) -> None:
    ns = env.apps[1]
    creates = env.operator.metric(
        "dbaasctl_dbms_operations_total", {"endpoint": "pg-badfmt", "operation": "create"}
    )
    env.create("badfmt", ns, "pg-badfmt")
    db = env.obs.wait_db(ns, "badfmt", "False", "SecretTemplateError")
    assert "result.nope" in Observer.ready_of(db)[2]  # type: ignore[index]
    assert db["status"]["provisionedAt"]  # the database exists: create is done for good
    assert env.obs.secret(ns, "badfmt-credentials") is None
    apply(env.kube, postgres_class(f"pg-badfmt-{env.suffix}"))  # the DBA fixes the class
    # The operator kept the credentials create issued and writes them once the class renders: no rotate.
    db = env.obs.wait_db(ns, "badfmt", "True", "Provisioned")
    assert can_login(env.creds(ns, "badfmt-credentials"))
    after = env.operator.metric(
        "dbaasctl_dbms_operations_total", {"endpoint": "pg-badfmt", "operation": "create"}
    )
    assert (after or 0) - (creates or 0) == 1


def test_foreign_secret_is_never_overwritten(env: Env) -> None:
    ns = env.apps[1]
    foreign = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "clash-credentials", "namespace": ns},
        "stringData": {"password": "someone-elses"},
    }
    apply(env.kube, foreign)
    env.create("clash", ns, "pg")
    db = env.obs.wait_db(ns, "clash", "False", "SecretConflict")
    assert "clash-credentials" in Observer.ready_of(db)[2]  # type: ignore[index]
    _no_dbms_call(env, ns, "clash")
    secret = env.obs.secret(ns, "clash-credentials")
    assert secret is not None
    assert Observer.decoded(secret) == {"password": "someone-elses"}
    assert not secret["metadata"].get("ownerReferences")
    assert not secret["metadata"].get("labels")
    env.kube.kubectl("delete", "secret", "-n", ns, "clash-credentials")
    env.obs.wait_db(ns, "clash", "True")
    assert can_login(env.creds(ns, "clash-credentials"))


def test_dsn_secret_edit_takes_effect_live(env: Env) -> None:
    ns = env.apps[1]
    env.create("dsnfix", ns, "pg-dsn2")
    db = env.obs.wait_db(ns, "dsnfix", "False", "EndpointUnavailable")
    assert "not-the-password" not in json.dumps(db)
    fixed = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "pg-dsn-bad", "namespace": env.system},
        "stringData": {"dsn": env.dsn},
    }
    apply(env.kube, fixed)
    env.obs.wait_db(ns, "dsnfix", "True", timeout=90)
    assert can_login(env.creds(ns, "dsnfix-credentials"))


# -- nothing secret leaks -------------------------------------------------------------------------------


def test_no_credentials_in_events_status_or_logs(env: Env) -> None:
    """Runs last in the module: every password any test saw must be absent from every sink."""
    assert len(env.seen_passwords) >= 10
    forbidden = {*env.seen_passwords, env.pg.admin_password, "not-the-password"}
    sinks = {"operator log": env.operator.log_text()}
    for ns in env.apps:
        sinks[f"events {ns}"] = env.kube.kubectl("get", "events.events.k8s.io", "-n", ns, "-o", "json").stdout
        sinks[f"core events {ns}"] = env.kube.kubectl("get", "events", "-n", ns, "-o", "json").stdout
        sinks[f"databases {ns}"] = env.kube.kubectl("get", "databases", "-n", ns, "-o", "json").stdout
    config = env.kube.kubectl_json("get", "operatorconfig", "-n", env.system, "dbaasctl")
    sinks["operatorconfig status"] = json.dumps(config["status"])  # the spec holds inline DSNs by design
    sinks["metrics"] = env.operator.metrics()
    for sink, text in sinks.items():
        for secret in forbidden:
            assert secret not in text, f"a credential leaked into {sink}"
