"""Exactly-once regressions: a user's edit while a procedure runs must not make it run again."""

from __future__ import annotations

from reconciler_harness import NS, Harness

from dbaasctl.kube.resources import SECRETS


async def test_edit_during_create_runs_create_once() -> None:
    h = Harness()
    await h.start()
    h.create_database()
    h.dbms.during_call = lambda op: h.edit({"metadata": {"labels": {"edit": "1"}}})
    await h.converge()
    h.dbms.during_call = None
    await h.converge()
    assert h.dbms.count("create") == 1, h.dbms.calls
    assert [c.operation for c in h.dbms.calls] == ["create"]
    ready = h.ready()
    assert ready is not None
    assert ready[0] == "True", ready
    secret = h.secret()
    assert secret is not None
    assert secret["password"] == h.dbms.passwords["orders"]


async def test_edit_during_rotate_runs_rotate_once() -> None:
    h = Harness()
    await h.start()
    h.create_database()
    await h.converge()
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v2"}}})
    h.dbms.during_call = lambda op: h.edit({"metadata": {"labels": {"edit": "2"}}})
    await h.converge()
    h.dbms.during_call = None
    await h.converge()
    assert [c.operation for c in h.dbms.calls] == ["create", "rotate"], h.dbms.calls
    secret = h.secret()
    assert secret is not None
    assert secret["password"] == h.dbms.passwords["orders"]
    ready = h.ready()
    assert ready is not None
    assert ready[0] == "True", ready


async def test_a_secret_cache_behind_our_last_write_does_not_rotate_again() -> None:
    h = Harness()
    await h.start()
    h.create_database()
    await h.converge()
    before = h.kube.read(SECRETS, NS, "orders-credentials")
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    await h.converge()
    assert [c.operation for c in h.dbms.calls] == ["create", "rotate"]
    h.secret_cache = before  # the informer still holds the Secret as it was before the rotation
    await h.edit({"metadata": {"labels": {"any": "edit"}}})
    await h.converge()
    assert [c.operation for c in h.dbms.calls] == ["create", "rotate"]
    ready = h.ready()
    assert ready is not None
    assert ready[0] == "True"
