"""The credentials Secret: ownership, drift detection, patches that keep what users added."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dbaasctl.controller.secrets import (
    CHECKSUM_ANNOTATION,
    DATABASE_LABEL,
    KEYS_ANNOTATION,
    MANAGED_BY_LABEL,
    build_secret,
    decode_data,
    inspect_secret,
    metadata_repair_patch,
    release_patch,
    write_patch,
)

DB: dict[str, Any] = {
    "apiVersion": "dbaasctl.io/v1",
    "kind": "Database",
    "metadata": {"name": "orders", "namespace": "shop", "uid": "uid-1"},
}


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies it."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def _stored(data: dict[str, str], rv: str = "7") -> dict[str, Any]:
    secret = build_secret(DB, "orders-credentials", data)
    secret["metadata"]["resourceVersion"] = rv
    return secret


def test_build_secret_is_owned_labelled_and_stamped() -> None:
    secret = _stored({"username": "u", "password": "p"})
    meta = secret["metadata"]
    assert meta["labels"] == {MANAGED_BY_LABEL: "dbaasctl", DATABASE_LABEL: "orders"}
    (ref,) = meta["ownerReferences"]
    assert ref == {
        "apiVersion": "dbaasctl.io/v1",
        "kind": "Database",
        "name": "orders",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert meta["annotations"][KEYS_ANNOTATION] == "password,username"
    assert decode_data(secret) == {"username": "u", "password": "p"}
    state = inspect_secret(secret, DB)
    assert state.exists
    assert state.owned
    assert not state.drifted
    assert not state.needs_metadata_repair


def test_long_names_get_a_valid_label_value() -> None:
    long = {**DB, "metadata": {**DB["metadata"], "name": "x" * 200}}
    label = build_secret(long, "s", {"a": "b"})["metadata"]["labels"][DATABASE_LABEL]
    assert len(label) <= 63


def test_foreign_secret_is_not_owned() -> None:
    foreign = {
        "metadata": {"name": "orders-credentials", "labels": {MANAGED_BY_LABEL: "dbaasctl"}},
        "data": {},
    }
    state = inspect_secret(foreign, DB)
    assert state.exists
    assert not state.owned
    other_owner = _stored({"a": "b"})
    other_owner["metadata"]["ownerReferences"][0]["uid"] = "uid-of-a-previous-database"
    assert not inspect_secret(other_owner, DB).owned
    assert not inspect_secret(None, DB).exists


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["data"].__setitem__("password", base64.b64encode(b"tampered").decode()),
        lambda s: s["data"].pop("password"),
        lambda s: s["data"].__setitem__("password", "%%% not base64"),
        lambda s: s["metadata"]["annotations"].pop(CHECKSUM_ANNOTATION),
        lambda s: s["metadata"].pop("annotations"),
    ],
)
def test_drift_in_our_keys_is_detected(edit: Any) -> None:
    secret = _stored({"username": "u", "password": "p"})
    edit(secret)
    assert inspect_secret(secret, DB).drifted


def test_user_additions_are_not_drift() -> None:
    secret = _stored({"username": "u", "password": "p"})
    secret["data"]["extra"] = base64.b64encode(b"mine").decode()
    secret["metadata"]["labels"]["team"] = "payments"
    secret["metadata"]["annotations"]["note"] = "x"
    assert not inspect_secret(secret, DB).drifted


def test_write_patch_replaces_our_keys_and_keeps_the_users() -> None:
    secret = _stored({"username": "u", "password": "old", "lastRotation": "t0"})
    secret["data"]["extra"] = base64.b64encode(b"mine").decode()
    secret["metadata"]["labels"]["team"] = "payments"
    secret["metadata"]["annotations"]["note"] = "keep"
    patch = write_patch(secret, DB, {"username": "u", "password": "new"})
    assert patch["metadata"]["resourceVersion"] == "7"  # stale writes fail with 409
    result = _merge(secret, patch)
    assert decode_data(result) == {
        "username": "u",
        "password": "new",
        "extra": "mine",
    }  # lastRotation was ours
    assert result["metadata"]["labels"]["team"] == "payments"
    assert result["metadata"]["annotations"]["note"] == "keep"
    assert not inspect_secret(result, DB).drifted


def test_metadata_repair_restores_labels_only() -> None:
    secret = _stored({"a": "b"})
    assert metadata_repair_patch(secret, DB) is None
    secret["metadata"]["labels"] = {"team": "x"}
    assert inspect_secret(secret, DB).needs_metadata_repair
    patch = metadata_repair_patch(secret, DB)
    assert patch is not None
    result = _merge(secret, patch)
    assert result["metadata"]["labels"] == {
        "team": "x",
        MANAGED_BY_LABEL: "dbaasctl",
        DATABASE_LABEL: "orders",
    }
    assert result["data"] == secret["data"]


def test_release_patch_hands_the_secret_over() -> None:
    secret = _stored({"password": "p"})
    secret["metadata"]["ownerReferences"].append({"kind": "Other", "name": "o", "uid": "uid-2"})
    secret["metadata"]["labels"]["team"] = "x"
    patch = release_patch(secret, "uid-1")
    assert patch is not None
    result = _merge(secret, patch)
    assert result["metadata"]["ownerReferences"] == [{"kind": "Other", "name": "o", "uid": "uid-2"}]
    assert result["metadata"]["labels"] == {"team": "x"}
    assert CHECKSUM_ANNOTATION not in result["metadata"].get("annotations", {})
    assert decode_data(result) == {"password": "p"}
    assert not inspect_secret(result, DB).owned
    assert release_patch(result, "uid-1") is None


@given(
    st.dictionaries(st.from_regex(r"[-_a-zA-Z0-9]{1,12}", fullmatch=True), st.text(max_size=30), max_size=6)
)
def test_checksum_roundtrip(data: dict[str, str]) -> None:
    secret = _stored(data)
    assert decode_data(secret) == data
    assert inspect_secret(secret, DB).drifted is (not data)  # an empty Secret has no bookkeeping to trust
