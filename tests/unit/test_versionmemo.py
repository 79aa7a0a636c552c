"""Values derived from one version of an object: computed once per (uid, resourceVersion), never reused
for another version or for an object the API server has not stamped."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from dbaasctl.controller.secrets import build_secret, inspect_secret
from dbaasctl.primitives.versionmemo import VersionMemo


def _obj(uid: str | None, rv: str | None, value: str) -> dict[str, Any]:
    meta = {k: v for k, v in (("uid", uid), ("resourceVersion", rv)) if v is not None}
    return {"metadata": meta, "value": value}


def test_one_version_is_computed_once_and_another_version_again() -> None:
    calls: list[str] = []

    def compute(obj: Mapping[str, Any]) -> str:
        calls.append(obj["value"])
        return str(obj["value"]).upper()

    memo: VersionMemo[str] = VersionMemo()
    assert memo.get(_obj("u1", "5", "a"), compute) == "A"
    assert memo.get(_obj("u1", "5", "a"), compute) == "A"
    assert memo.get(_obj("u1", "6", "b"), compute) == "B"  # a new version of the same object
    assert memo.get(_obj("u2", "5", "c"), compute) == "C"  # the same version number, another object
    assert calls == ["a", "b", "c"]


def test_objects_without_a_server_version_are_never_remembered() -> None:
    calls: list[str] = []

    def compute(obj: Mapping[str, Any]) -> str:
        calls.append(obj["value"])
        return str(obj["value"])

    memo: VersionMemo[str] = VersionMemo()
    for obj in (_obj(None, None, "x"), _obj("u1", None, "y"), _obj(None, "7", "z")):
        memo.get(obj, compute)
        memo.get(obj, compute)
    assert calls == ["x", "x", "y", "y", "z", "z"]
    assert len(memo) == 0


def test_the_oldest_entries_go_first() -> None:
    memo: VersionMemo[int] = VersionMemo(capacity=3)
    for rv in range(5):
        memo.get(_obj("u", str(rv), ""), lambda _obj: 0)
    assert len(memo) == 3
    calls: list[int] = []
    memo.get(_obj("u", "0", ""), lambda _obj: calls.append(1) or 1)  # evicted: computed again
    memo.get(_obj("u", "4", ""), lambda _obj: calls.append(2) or 2)  # kept
    assert calls == [1]


def test_a_secret_edited_at_a_new_version_is_seen_drifted_after_its_clean_version_was_inspected() -> None:
    db = {"metadata": {"name": "orders", "namespace": "shop", "uid": "db-uid"}}
    secret = build_secret(db, "orders-credentials", {"password": "s3cret"}, 1)
    secret["metadata"].update(uid="secret-uid", resourceVersion="10")
    assert not inspect_secret(secret, db).drifted
    edited = {**secret, "metadata": {**secret["metadata"], "resourceVersion": "11"}}
    edited["data"] = {"password": base64.b64encode(b"changed").decode()}
    assert inspect_secret(edited, db).drifted
    assert not inspect_secret(secret, db).drifted
