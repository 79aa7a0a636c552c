"""The reconciler's observable contract on the in-memory API: conditions, Events, metrics, logs."""

from __future__ import annotations

import asyncio
import copy
import logging

import pytest
from prometheus_client import CollectorRegistry
from reconciler_fakes import SERVER_ERROR, Fault
from reconciler_harness import NS, Harness, database_class

from dbaasctl.controller import reasons
from dbaasctl.controller.database.act import FENCE_MARGIN
from dbaasctl.controller.database.dbms import DBMS_BACKOFF_BASE
from dbaasctl.kube.controller import Controller, Result
from dbaasctl.kube.errors import ApiError, describe_failure
from dbaasctl.kube.resources import SECRETS
from dbaasctl.observability.metrics import sample_value
from support.fakekube import Call


async def _ready_harness() -> Harness:
    h = Harness()
    await h.start()
    h.create_database()
    await h.converge()
    return h


def _conditions(h: Harness) -> list[dict[str, object]]:
    return list(((h.db() or {}).get("status") or {}).get("conditions") or [])


@pytest.mark.parametrize(
    "patch",
    [
        {"spec": {"deletionPolicy": "Retain"}},
        {"metadata": {"labels": {"team": "a"}}, "spec": {"deletionPolicy": "Retain"}},
    ],
)
async def test_every_condition_carries_the_current_generation_after_a_spec_change(
    patch: dict[str, object],
) -> None:
    h = await _ready_harness()
    await h.edit(patch)
    generation = h.db()["metadata"]["generation"]  # type: ignore[index]
    assert generation == 2
    await h.converge()
    db = h.db()
    assert db is not None
    assert db["status"]["observedGeneration"] == generation
    assert _conditions(h)
    for cond in _conditions(h):
        assert cond["observedGeneration"] == generation, cond  # kubectl wait --for=condition=Ready


async def test_admission_failure_is_a_counted_terminal_error() -> None:
    h = Harness()
    await h.start()
    h.create_database(endpoint="nope")
    outcome = await h.reconcile()
    assert outcome == Result(failed=True)
    assert h.ready()[:2] == ("False", reasons.ENDPOINT_NOT_FOUND)  # type: ignore[index]
    assert not h.dbms.calls
    registry = CollectorRegistry()
    controller = Controller("database", h.reconciler.reconcile, workers=1, registry=registry)
    controller.start()
    controller.enqueue(f"{NS}/orders")
    for _ in range(200):
        if sample_value(
            registry, "controller_runtime_reconcile_total", {"controller": "database", "result": "error"}
        ):
            break
        await asyncio.sleep(0.01)
    await controller.stop(1.0)
    labels = {"controller": "database"}
    assert sample_value(registry, "controller_runtime_reconcile_total", {**labels, "result": "error"}) == 1
    assert sample_value(registry, "controller_runtime_reconcile_total", {**labels, "result": "success"}) == 0
    assert sample_value(registry, "controller_runtime_terminal_reconcile_errors_total", labels) == 1


async def test_a_failed_procedure_backs_off_for_seconds() -> None:
    h = Harness()
    await h.start()
    h.create_database()
    h.dbms.faults.append(("create", SERVER_ERROR))
    outcome = await h.reconcile()
    assert isinstance(outcome, Result)
    assert outcome.failed
    assert outcome.requeue_after is not None
    assert outcome.requeue_after >= DBMS_BACKOFF_BASE * 0.8
    assert h.ready()[:2] == ("False", reasons.CREATE_FAILED)  # type: ignore[index]
    assert (h.db() or {})["status"].get("pendingOperation") is None  # no effect: spec editable again


async def test_configuration_not_applied_yet_requeues_instead_of_blocking() -> None:
    h = Harness()
    h.create_database()
    assert await h.reconcile() == Result(requeue_after=1.0)


async def test_namespace_cache_miss_is_not_ready_not_fail_open() -> None:
    h = Harness()
    await h.start()
    binding = h.state.bindings["pg"]
    from dbaasctl.api.operatorconfig import AllowedNamespaces

    rule = AllowedNamespaces.model_validate(
        {"selector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["blocked"]}]}}
    )
    h.state.bindings["pg"] = binding.__class__(
        **{**binding.__dict__, "spec": binding.spec.model_copy(update={"allowed_namespaces": rule})}
    )
    del h.namespaces[NS]
    h.create_database()
    outcome = await h.reconcile()
    assert outcome == Result(requeue_after=1.0)
    assert not h.dbms.calls
    h.namespaces[NS] = {"metadata": {"name": NS, "labels": {"tier": "blocked"}}}
    assert await h.reconcile() == Result(failed=True)
    assert h.ready()[:2] == ("False", reasons.NAMESPACE_NOT_ALLOWED)  # type: ignore[index]


async def test_rotate_true_is_honoured_once_and_the_annotation_removed() -> None:
    h = await _ready_harness()
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "true"}}})
    h.api.faults.append(Fault("patch databases annotations", SERVER_ERROR))  # the removal fails once
    await h.converge()
    await h.converge()
    assert [c.operation for c in h.dbms.calls] == ["create", "rotate"]
    db = h.db()
    assert db is not None
    assert "dbaasctl.io/rotate" not in (db["metadata"].get("annotations") or {})
    assert db["status"].get("rotationToken") is None
    assert h.secret()["password"] == h.dbms.passwords["orders"]  # type: ignore[index]


async def test_legacy_rotate_annotation_is_an_alias_with_one_event() -> None:
    h = await _ready_harness()
    await h.edit({"metadata": {"annotations": {"dbaas.bedag.ch/rotate": "2026-01"}}})
    await h.converge()
    await h.edit({"metadata": {"annotations": {"dbaas.bedag.ch/rotate": "2026-02"}}})
    await h.converge()
    assert [c.operation for c in h.dbms.calls] == ["create", "rotate", "rotate"]
    assert h.events.reasons().count(reasons.LEGACY_ANNOTATION) == 1
    assert (h.db() or {})["status"]["rotationToken"] == "2026-02"


async def test_credentials_held_until_the_secret_can_be_written_no_new_rotate() -> None:
    h = await _ready_harness()
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    # The API server refuses every Secret write for a while.
    for _ in range(12):
        h.api.faults.append(Fault("patch secrets", SERVER_ERROR, 1))
    outcome = await h.reconcile()
    assert isinstance(outcome, Result)
    assert outcome.failed
    assert h.ready()[:2] == ("False", reasons.SECRET_WRITE_FAILED)  # type: ignore[index]
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v2"}}})  # asks again meanwhile
    await h.converge()
    rotates = [c for c in h.dbms.calls if c.operation == "rotate"]
    assert len(rotates) == 2  # v1 once, then v2 once, never a rotate while v1's credentials were held
    assert h.secret()["password"] == h.dbms.passwords["orders"]  # type: ignore[index]
    assert (h.db() or {})["status"]["rotationToken"] == "v2"


async def test_secret_template_error_keeps_the_credentials_for_the_fixed_class() -> None:
    broken = database_class()
    broken["spec"]["secretFormat"] = {"password": "{{ result.password }}", "x": "{{ result.nope }}"}
    h = Harness(klass=broken)
    await h.start()
    h.create_database()
    await h.converge()
    assert h.ready()[:2] == ("False", reasons.SECRET_TEMPLATE_ERROR)  # type: ignore[index]
    assert (h.db() or {})["status"]["provisionedAt"]
    h.classes["pg"] = database_class()  # the DBA fixes the class
    await h.converge()
    assert [c.operation for c in h.dbms.calls] == ["create"]
    assert h.ready()[:2] == ("True", reasons.PROVISIONED)  # type: ignore[index]
    assert h.secret()["password"] == h.dbms.passwords["orders"]  # type: ignore[index]


async def test_log_lines_and_masked_dbms_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dbaasctl")
    h = await _ready_harness()
    password = h.dbms.passwords["orders"]
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "x"}}})
    from dbaasctl.dbms.drivers import ProcedureError, Reason

    async def leak(_: str) -> None:
        h.dbms.during_call = None
        raise ProcedureError(Reason.PROCEDURE_FAILED, f"DETAIL: Key (v)=({password}) already exists")

    h.dbms.during_call = leak
    await h.converge()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert password not in text
    assert "_CallFailed" not in text
    assert "database created on endpoint pg" in text
    assert sum("credentials rotated on endpoint pg" in r.getMessage() for r in caplog.records) == 1
    assert not any("rotating credentials" in r.getMessage() for r in caplog.records)


async def test_secret_is_stamped_with_its_credential_generation() -> None:
    h = await _ready_harness()
    secret = h.kube.read(SECRETS, NS, "orders-credentials")
    assert secret is not None
    assert secret["metadata"]["annotations"]["dbaasctl.io/credential-generation"] == "1"
    assert (h.db() or {})["status"]["credentialGeneration"] == 1


async def test_no_procedure_call_without_a_lease_that_outlasts_it() -> None:
    h = Harness()
    await h.start()
    asked: list[float] = []

    def may_act(duration: float) -> bool:
        asked.append(duration)
        return False

    h.reconciler.d.may_act = may_act
    h.create_database()
    assert await h.reconcile() == Result(requeue_after=1.0)
    assert not h.dbms.calls
    assert asked == [FENCE_MARGIN]
    # A lease valid for 15 s more (shorter than the 30 s operation timeout) lets the call start.
    h.reconciler.d.may_act = lambda duration: duration < 15.0
    await h.converge()
    assert [c.operation for c in h.dbms.calls] == ["create"]


def test_a_refused_write_names_what_the_server_refused() -> None:
    """An RBAC or admission refusal is only actionable with the server's words: which permission."""
    forbidden = ApiError(
        403,
        "Forbidden",
        'secrets "orders-credentials" is forbidden: cannot set blockOwnerDeletion if an ownerReference '
        'refers to a resource you can\'t set finalizers on: User "system:serviceaccount:ops:dbaasctl" '
        'cannot update resource "databases/finalizers" in API group "dbaasctl.io"',
    )
    assert describe_failure(forbidden).startswith("403 Forbidden: secrets")
    assert '"databases/finalizers"' in describe_failure(forbidden)
    assert (
        describe_failure(ApiError(500, "InternalError", "etcdserver: request timed out"))
        == "500 InternalError"
    )
    # A validation message can quote the request (a Secret's data): it is not repeated in conditions.
    invalid = ApiError(422, "Invalid", 'Secret "orders-credentials" is invalid: data[password]: "c2VjcmV0"')
    assert describe_failure(invalid) == "422 Invalid"
    # Anything else is named by its type: its text is unknown, and a roll-out failure is not logged.
    assert describe_failure(KeyError("password=hunter2")) == "unexpected error (KeyError)"


async def test_a_create_reads_the_absent_secret_once_and_recovers_when_it_appears_meanwhile() -> None:
    h = Harness()
    await h.start()
    h.create_database()
    await h.converge()
    secret_gets = [c for c in h.kube.calls if c.verb == "get" and c.resource == SECRETS]
    assert len(secret_gets) == 1, "the pass's own fresh read already said the Secret is absent"
    assert h.secret()["password"] == h.dbms.passwords["orders"]  # type: ignore[index]

    # The Secret appears between that read and the write: the create's 409 leads to a GET and an update.
    h.create_database("other")
    created = False

    async def someone_creates_it(call: Call) -> None:
        nonlocal created
        if call.verb == "create" and call.resource == SECRETS and not created:
            created = True
            await h.kube.create(
                SECRETS.path(NS),
                {"metadata": {"name": "other-credentials", "namespace": NS}, "data": {}},
            )

    h.kube.hook = someone_creates_it
    await h.converge("other")
    assert created
    assert h.ready("other")[:2] == ("False", reasons.SECRET_CONFLICT)  # type: ignore[index]


async def test_a_cached_copy_that_lags_never_undoes_a_recorded_rotation() -> None:
    """An informer whose watch was re-established after an outage serves the copy from before our own
    last status write. Deciding on it must not write that old status back (the rotation token with
    it), or the next pass rotates once more for the same annotation."""
    h = await _ready_harness()
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "r1"}}})
    before_the_record = copy.deepcopy(h.db())
    await h.converge()
    assert h.dbms.count("rotate") == 1
    assert (h.db() or {})["status"]["rotationToken"] == "r1"

    h.database_cache = before_the_record
    await h.reconcile()
    await h.reconcile()
    h.database_cache = None
    await h.converge()
    assert h.dbms.count("rotate") == 1
    assert (h.db() or {})["status"]["rotationToken"] == "r1"
    assert h.ready()[:2] == ("True", reasons.ROTATED)  # type: ignore[index]


async def test_a_lagging_copy_that_is_blocked_never_writes_its_old_status_back() -> None:
    """The same lagging copy, on a pass that cannot act (the class is gone for a moment): reporting
    Blocked must not write the copy's old status (credential generation, rotation token) back over the
    recorded rotation, or the Secret looks one generation ahead and the annotation unhonoured."""
    h = await _ready_harness()
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "r1"}}})
    before_the_record = copy.deepcopy(h.db())
    secret_before = copy.deepcopy(h.kube.read(SECRETS, NS, "orders-credentials"))
    await h.converge()
    assert h.dbms.count("rotate") == 1

    klass = h.classes.pop("pg")
    h.database_cache, h.secret_cache = before_the_record, secret_before  # both informers lag
    await h.reconcile()
    h.database_cache = h.secret_cache = None
    h.classes["pg"] = klass
    await h.converge()
    assert h.dbms.count("rotate") == 1
    status = (h.db() or {})["status"]
    assert status["rotationToken"] == "r1"
    assert status["credentialGeneration"] == 2
