"""The idempotency key procedures get as `{{ operation.id }}`: one per intent, the same on a repeat."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from reconciler_fakes import SERVER_ERROR, TIMEOUT_APPLIED
from reconciler_harness import NS, Harness, database_class

from dbaasctl.controller.database import DATABASES
from dbaasctl.templates import TemplateContext

KEYED = {"k8sName": "{{ metadata.name }}", "intent": "{{ operation.id }}"}


def keyed_harness() -> tuple[Harness, list[tuple[str, str]]]:
    klass = database_class()
    for op in ("create", "rotate", "delete"):
        klass["spec"]["operations"][op]["inputs"] = KEYED
    h = Harness(klass=klass)
    seen: list[tuple[str, str]] = []
    run = h.dbms.run

    async def recording(operation: str, inputs: Mapping[str, str]) -> dict[str, str]:
        seen.append((operation, inputs["intent"]))
        return await run(operation, inputs)

    h.dbms.run = recording  # type: ignore[method-assign]
    return h, seen


async def test_a_call_repeated_after_a_lost_answer_carries_the_same_key() -> None:
    h, seen = keyed_harness()
    await h.start()
    h.create_database()
    uid = h.db()["metadata"]["uid"]  # type: ignore[index]
    h.dbms.faults.append(("create", TIMEOUT_APPLIED))
    await h.converge()
    creates = [key for op, key in seen if op == "create"]
    assert len(creates) == 2, seen  # the answer was lost: the operator cannot know, it calls again
    assert creates[0] == creates[1] == f"{uid}:create:1"

    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "r1"}}})
    h.dbms.faults.append(("rotate", TIMEOUT_APPLIED))
    await h.converge()
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "r2"}}})
    await h.converge()
    rotates = [key for op, key in seen if op == "rotate"]
    assert rotates == [f"{uid}:rotate:2", f"{uid}:rotate:2", f"{uid}:rotate:3"], seen


async def test_a_call_that_failed_without_effect_keeps_its_key_for_the_retry() -> None:
    """Nothing happened on the DBMS, so the retry is the same intent (and the procedure rolled back)."""
    h, seen = keyed_harness()
    await h.start()
    h.create_database()
    h.dbms.faults.append(("create", SERVER_ERROR))
    await h.converge()
    await h.converge()
    keys = {key for op, key in seen if op == "create"}
    assert len(keys) == 1, seen
    assert h.dbms.count("create") == 1


async def test_delete_gets_a_key_of_its_own() -> None:
    h, seen = keyed_harness()
    await h.start()
    h.create_database()
    await h.converge()
    uid = h.db()["metadata"]["uid"]  # type: ignore[index]
    await h.kube.delete(DATABASES.path(NS, "orders"))
    await h.converge()
    assert ("delete", f"{uid}:delete:1") in seen, seen


@pytest.mark.parametrize(
    ("metadata", "owner"),
    [({"name": "n", "namespace": "ns", "uid": "u-1"}, "u-1"), ({"name": "n", "namespace": "ns"}, "ns/n")],
)
def test_the_key_names_the_database_the_operation_and_the_generation(
    metadata: dict[str, str], owner: str
) -> None:
    ctx = TemplateContext(metadata=metadata, params={})
    assert ctx.for_operation("create", 0).operation == {"name": "create", "id": f"{owner}:create:1"}
    assert ctx.for_operation("rotate", 4).operation["id"] == f"{owner}:rotate:5"
    assert ctx.for_operation("delete", 4).operation["id"] == f"{owner}:delete:4"
