"""Admission: every reason the operator refuses a Database before any DBMS call, from real config parsing."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dbaasctl.api.database import Database
from dbaasctl.api.operatorconfig import OperatorConfig
from dbaasctl.controller import reasons
from dbaasctl.controller.admission import Admission, AdmissionError, NotReadyError, SecretRenderError
from dbaasctl.controller.config import ConfigReconciler, ConfigState
from dbaasctl.dbms.endpoints import EndpointRegistry
from dbaasctl.kube.config import ClientConfig
from dbaasctl.kube.rest import KubeClient

PG_DSN = "postgresql://admin:s3cret-pw@db.internal:5433/dbaas"
INPUTS = {"k8sNamespace": "{{ metadata.namespace }}", "k8sName": "{{ metadata.name }}"}


def pg_class(name: str = "pg", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "driver": "postgres",
        "operations": {
            "create": {"name": "dbaas.create_database", "inputs": INPUTS},
            "delete": {"name": "dbaas.drop_database", "inputs": INPUTS},
            "rotate": {"name": "dbaas.rotate_password", "inputs": INPUTS},
        },
    }
    base.update(spec)
    return {"apiVersion": "dbaasctl.io/v1", "kind": "DatabaseClass", "metadata": {"name": name}, "spec": base}


def config(*dbms: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "apiVersion": "dbaasctl.io/v1",
        "kind": "OperatorConfig",
        "metadata": {"name": "dbaasctl", "namespace": "ops", "generation": 1, "resourceVersion": "1"},
        "spec": {"keepalive": 0, "dbms": [{"databaseClassName": c, "endpoints": eps} for c, eps in dbms]},
    }


def db(name: str = "orders", namespace: str = "shop", endpoint: str = "pg", **spec: Any) -> Database:
    return Database.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace, "uid": "u1", "labels": {"app": "shop"}},
            "spec": {"endpoint": endpoint, **spec},
        }
    )


class World:
    """Caches as the informers would hold them, and the config state built by the real reconciler code."""

    def __init__(self) -> None:
        self.classes: dict[str, dict[str, Any]] = {}
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.open_endpoints: dict[str, str] = {}
        self.state = ConfigState(config_ref="ops/dbaasctl")
        self.admission = Admission(
            self.state,
            get_class=self.classes.get,
            get_namespace=self.namespaces.get,
            endpoint_driver=self.open_endpoints.get,
        )

    async def configure(self, raw: dict[str, Any] | None) -> None:
        client = KubeClient(ClientConfig(host="https://127.0.0.1:1"))
        try:
            reconciler = ConfigReconciler(
                client=client,
                namespace="ops",
                name="dbaasctl",
                state=self.state,
                registry=EndpointRegistry(),
                get_config=lambda: raw,
                get_class=self.classes.get,
                get_secret=self.secrets.get,
                on_bindings_changed=lambda _: None,
            )
            if raw is None:
                self.state.found = False
                self.state.applied.set()
                return
            bindings, specs = reconciler._build(OperatorConfig.model_validate(raw))
            self.state.found = True
            self.state.bindings = bindings
            for spec in specs:
                self.open_endpoints[spec.name] = spec.driver
            self.state.applied.set()
        finally:
            await client.close()


@pytest.fixture
def world() -> World:
    w = World()
    w.classes["pg"] = pg_class()
    w.namespaces["shop"] = {"metadata": {"name": "shop", "labels": {"tier": "gold"}}}
    return w


def refused(fn: Callable[[], Any], reason: str) -> str:
    with pytest.raises(AdmissionError) as info:
        fn()
    assert info.value.reason == reason, info.value.message
    return info.value.message


async def refused_async(call: Awaitable[Any], reason: str) -> str:
    with pytest.raises(AdmissionError) as info:
        await call
    assert info.value.reason == reason, info.value.message
    return info.value.message


async def test_happy_path_renders_inputs_and_secret(world: World) -> None:
    await world.configure(config(("pg", [{"name": "pg", "dsn": PG_DSN}])))
    plan = world.admission.admit(db(), strict=True)
    assert await plan.operation("create") == (
        "dbaas.create_database",
        {"k8sNamespace": "shop", "k8sName": "orders"},
    )
    data = await plan.secret_data({"username": "u", "password": "p", "dbName": "d"})
    assert data["host"] == "db.internal"  # the DSN's host stands in for a result without one
    assert data["port"] == "5433"
    assert data["uri"] == "postgresql://u:p@db.internal:5433/d"


async def test_no_config(world: World) -> None:
    await world.configure(None)
    assert "ops/dbaasctl" in refused(
        lambda: world.admission.admit(db(), strict=True), reasons.CONFIG_NOT_FOUND
    )


async def test_unknown_endpoint_lists_the_declared_ones(world: World) -> None:
    await world.configure(config(("pg", [{"name": "pg", "dsn": PG_DSN}])))
    msg = refused(lambda: world.admission.admit(db(endpoint="nope"), strict=True), reasons.ENDPOINT_NOT_FOUND)
    assert "'nope'" in msg
    assert "declared: pg" in msg


async def test_class_missing_invalid_or_unknown_driver(world: World) -> None:
    await world.configure(config(("ghost", [{"name": "pg", "dsn": PG_DSN}])))
    refused(lambda: world.admission.admit(db(), strict=True), reasons.CLASS_NOT_FOUND)
    world.classes["ghost"] = pg_class(
        "ghost",
        driver="mariadb",
        operations={"create": {"name": "c", "inputs": {"0": "a", "2": "b"}}, "delete": {"name": "d"}},
    )
    assert "without gaps" in refused(lambda: world.admission.admit(db(), strict=True), reasons.CLASS_INVALID)
    world.classes["ghost"] = pg_class("ghost", driver="oracle")
    assert "oracle" in refused(lambda: world.admission.admit(db(), strict=True), reasons.DRIVER_NOT_SUPPORTED)


async def test_dsn_that_cannot_serve_the_driver(world: World) -> None:
    world.classes["maria"] = pg_class("maria", driver="mariadb", operations={
        "create": {"name": "c", "inputs": {"0": "{{ metadata.name }}"}}, "delete": {"name": "d"}})  # fmt: skip
    await world.configure(config(("maria", [{"name": "pg", "dsn": PG_DSN}])))
    msg = refused(lambda: world.admission.admit(db(), strict=True), reasons.DRIVER_NOT_SUPPORTED)
    assert "s3cret-pw" not in msg


async def test_dsn_secret_problems_are_named_without_content(world: World) -> None:
    ref = {"name": "pg", "secretKeyRef": {"name": "pg-dsn", "key": "dsn"}}
    await world.configure(config(("pg", [ref])))
    assert "ops/pg-dsn not found" in refused(
        lambda: world.admission.admit(db(), strict=True), reasons.ENDPOINT_UNAVAILABLE
    )
    world.secrets["pg-dsn"] = {"data": {"other": base64.b64encode(PG_DSN.encode()).decode()}}
    await world.configure(config(("pg", [ref])))
    assert "no valid key 'dsn'" in refused(
        lambda: world.admission.admit(db(), strict=True), reasons.ENDPOINT_UNAVAILABLE
    )
    before = world.state.bindings["pg"].fingerprint
    world.secrets["pg-dsn"] = {"data": {"dsn": base64.b64encode(PG_DSN.encode()).decode()}}
    await world.configure(config(("pg", [ref])))
    assert world.admission.admit(db(), strict=True).endpoint == "pg"
    assert world.state.bindings["pg"].fingerprint != before  # a DSN edit re-enqueues its Databases
    assert world.state.referenced_secrets == frozenset({"pg-dsn"})


async def test_namespace_rules_apply_to_create_only(world: World) -> None:
    rules = {"names": ["billing"], "selector": {"matchLabels": {"tier": "platinum"}}}
    await world.configure(config(("pg", [{"name": "pg", "dsn": PG_DSN, "allowedNamespaces": rules}])))
    msg = refused(lambda: world.admission.admit(db(), strict=True), reasons.NAMESPACE_NOT_ALLOWED)
    assert "shop" in msg
    assert world.admission.admit(db(namespace="billing"), strict=True).endpoint == "pg"
    assert world.admission.admit(db(), strict=False).endpoint == "pg"  # rotate/delete of an existing one
    world.namespaces["shop"]["metadata"]["labels"]["tier"] = "platinum"
    assert world.admission.admit(db(), strict=True).endpoint == "pg"


async def test_declared_parameters(world: World) -> None:
    world.classes["pg"] = pg_class(
        parameters=[
            {"name": "tier", "required": True, "pattern": "^(small|large)$"},
            {"name": "owner", "default": "team-a", "maxLength": 8},
        ],
        operations={
            "create": {"name": "c", "inputs": {"t": "{{ params.tier }}", "o": "{{ params.owner }}"}},
            "delete": {"name": "d"},
        },
    )
    await world.configure(config(("pg", [{"name": "pg", "dsn": PG_DSN}])))
    msg = refused(lambda: world.admission.admit(db(params={"tier": "huge-secret-value"}), strict=True),
                  reasons.INVALID_PARAMETERS)  # fmt: skip
    assert "params.tier does not match" in msg
    assert "huge-secret-value" not in msg
    assert "required" in refused(lambda: world.admission.admit(db(), strict=True), reasons.INVALID_PARAMETERS)
    assert "unknown params color" in refused(
        lambda: world.admission.admit(db(params={"tier": "small", "color": "red"}), strict=True),
        reasons.INVALID_PARAMETERS,
    )
    plan = world.admission.admit(db(params={"tier": "small"}), strict=True)
    assert (await plan.operation("create"))[1] == {"t": "small", "o": "team-a"}
    lenient = world.admission.admit(db(params={"tier": "retired-value"}), strict=False)
    assert (await lenient.operation("create"))[1] == {"t": "retired-value", "o": "team-a"}


async def test_template_and_operation_errors(world: World) -> None:
    world.classes["pg"] = pg_class(
        operations={
            "create": {"name": "c", "inputs": {"x": "{{ params.prefix }}-{{ metadata.name }}"}},
            "delete": {"name": "d"},
        },
        secretFormat={"password": "{{ result.password }}", "dsn": "{{ result.password }"},
    )
    await world.configure(config(("pg", [{"name": "pg", "dsn": PG_DSN}])))
    plan = world.admission.admit(db(), strict=True)
    assert "params.prefix" in await refused_async(plan.operation("create"), reasons.TEMPLATE_ERROR)
    assert "secretFormat 'dsn'" in await refused_async(plan.check_secret_format(), reasons.TEMPLATE_ERROR)
    assert "no rotate procedure" in await refused_async(
        plan.operation("rotate"), reasons.OPERATION_NOT_SUPPORTED
    )


async def test_secret_render_error_never_shows_result_values(world: World) -> None:
    world.classes["pg"] = pg_class(
        secretFormat={"pw": "{{ .Result.password }}", "user": "{{ .Result.user }}"}
    )
    await world.configure(config(("pg", [{"name": "pg", "dsn": PG_DSN}])))
    plan = world.admission.admit(db(), strict=True)
    assert await plan.secret_data({"password": "p", "user": "u"}) == {"pw": "p", "user": "u"}
    with pytest.raises(SecretRenderError) as info:
        await plan.secret_data({"password": "hunter2-secret"})
    assert "result.user" in str(info.value)
    assert "hunter2-secret" not in str(info.value)


async def test_endpoint_not_open_yet_is_not_an_error_for_the_user(world: World) -> None:
    await world.configure(config(("pg", [{"name": "pg", "dsn": PG_DSN}])))
    world.open_endpoints.clear()
    with pytest.raises(NotReadyError):
        world.admission.admit(db(), strict=True)
    world.open_endpoints["pg"] = "mysql"  # still open for the class's previous driver
    with pytest.raises(NotReadyError, match="re-opened"):
        world.admission.admit(db(), strict=True)


async def test_nul_character_is_refused_for_postgres_before_any_call(world: World) -> None:
    world.classes["pg"] = pg_class(
        operations={"create": {"name": "c", "inputs": {"t": "{{ params.note }}"}}, "delete": {"name": "d"}}
    )
    await world.configure(config(("pg", [{"name": "pg", "dsn": PG_DSN}])))
    msg = refused(
        lambda: world.admission.admit(db(params={"note": "a\x00b"}), strict=True), reasons.INVALID_PARAMETERS
    )
    assert "note" in msg
    assert "NUL" in msg
    assert world.admission.admit(db(params={"note": "ab"}), strict=True).params == {"note": "ab"}
