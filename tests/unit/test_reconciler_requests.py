"""The API requests of one operation, counted: each is CPU on the operator and on the API server, so a
request that buys no guarantee is a cost per Database. The guarantees themselves are proved by the fault
matrix and the exactly-once tests; here, that the flows stay as short as those guarantees allow."""

from __future__ import annotations

from reconciler_harness import NS, Harness, database_class

from dbaasctl.kube.resources import SECRETS


async def _provisioned(h: Harness) -> None:
    await h.start()
    h.create_database()
    await h.converge()
    ready = h.ready()
    assert ready is not None
    assert ready[0] == "True"


async def test_a_rotation_reads_the_secret_once_from_the_api_server() -> None:
    """The fresh read that fences the decision is the base of the Secret write: no second GET between
    the rotate call and the patch (that patch carries the resourceVersion read, so an edit in between
    is still a 409 and a retry from a new GET)."""
    h = Harness()
    await _provisioned(h)
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v2"}}})
    h.api.requests.clear()
    await h.converge()
    assert [c.operation for c in h.dbms.calls] == ["create", "rotate"]
    assert h.api.requests == [
        "get secrets",  # the fresh read the rotation is decided on
        "patch databases/status",  # the intent marker
        "patch secrets",  # the new credentials
        "patch databases/status",  # the record
    ]
    secret = h.secret()
    assert secret is not None
    assert secret["password"] == h.dbms.passwords["orders"]


async def test_a_create_confirms_the_missing_secret_once() -> None:
    h = Harness()
    await h.start()
    h.create_database()
    await h.converge()
    assert h.api.requests.count("get secrets") == 1
    assert h.api.requests.count("create secrets") == 1


async def test_a_secret_edited_during_the_rotate_call_is_read_again_not_overwritten() -> None:
    """The write starts from the pass's read; an edit made while the procedure ran makes it a 409, the
    retry starts from a GET, keeps the user's key and stores the new credentials; rotate runs once."""
    h = Harness()
    await _provisioned(h)
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v2"}}})

    async def edit_secret(_: str) -> None:
        await h.kube.patch(SECRETS.path(NS, "orders-credentials"), {"data": {"note": "dXNlcg=="}})

    h.dbms.during_call = edit_secret
    h.api.requests.clear()
    await h.converge()
    h.dbms.during_call = None
    assert [c.operation for c in h.dbms.calls] == ["create", "rotate"]
    assert h.api.requests.count("patch secrets") == 2  # the stale one refused, the retry applied
    assert h.api.requests.count("get secrets") == 2  # the fresh read, and the retry's
    secret = h.secret()
    assert secret is not None
    assert secret["password"] == h.dbms.passwords["orders"]
    assert secret["note"] == "user"
    assert h.ready() is not None
    assert h.ready()[0] == "True"  # type: ignore[index]


async def test_a_two_phase_rotation_reads_our_secret_once() -> None:
    """Our Secret's write starts from the fenced read; the previous Secret's name was not read before
    the rotation (none was pending), so its write still starts from a GET."""
    h = Harness(klass=database_class(retire=True, grace="10m"))
    await _provisioned(h)
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v2"}}})
    h.api.requests.clear()
    await h.reconcile()
    assert [c.operation for c in h.dbms.calls] == ["create", "rotate"]
    assert h.api.requests == [
        "get secrets",  # our Secret, fresh: the rotation is decided on it
        "patch databases/status",
        "get secrets",  # the previous Secret's name
        "create secrets",
        "patch secrets",
        "patch databases/status",
        "get secrets",  # the next step decides on retire: the previous Secret, from the API server
    ]


async def test_rotate_true_is_taken_off_before_the_record_so_no_token_is_written_or_cleared() -> None:
    h = Harness()
    await _provisioned(h)
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "true"}}})
    h.api.requests.clear()
    await h.converge()
    assert [c.operation for c in h.dbms.calls] == ["create", "rotate"]
    assert h.api.requests == [
        "get secrets",
        "patch databases/status",  # the intent marker, token "true" in it
        "patch secrets",
        "patch databases annotations",  # the request taken off, fenced by the intent's resourceVersion
        "patch databases/status",  # the record: no rotationToken to set, none to clear later
    ]
    db = h.db()
    assert db is not None
    assert "dbaasctl.io/rotate" not in (db["metadata"].get("annotations") or {})
    assert db["status"].get("rotationToken") is None
    assert db["status"].get("pendingOperation") is None


async def test_rotate_true_asked_again_after_it_was_taken_off_is_a_new_request() -> None:
    h = Harness()
    await _provisioned(h)
    for _ in range(2):
        await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "true"}}})
        await h.converge()
    assert [c.operation for c in h.dbms.calls] == ["create", "rotate", "rotate"]


async def test_rotate_true_on_a_database_edited_during_the_call_is_honoured_once() -> None:
    """The edit makes the take-off a 409: the record stores token "true" instead, and the annotation
    comes off in a later step; no second rotation for the same request."""
    h = Harness()
    await _provisioned(h)
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "true"}}})

    async def edit_database(_: str) -> None:
        await h.edit({"metadata": {"labels": {"team": "shop"}}})

    h.dbms.during_call = edit_database
    await h.converge()
    h.dbms.during_call = None
    assert [c.operation for c in h.dbms.calls] == ["create", "rotate"]
    db = h.db()
    assert db is not None
    assert "dbaasctl.io/rotate" not in (db["metadata"].get("annotations") or {})
    assert db["status"].get("rotationToken") is None
    assert db["metadata"]["labels"] == {"team": "shop"}
    assert h.secret()["password"] == h.dbms.passwords["orders"]  # type: ignore[index]
