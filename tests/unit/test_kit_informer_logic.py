"""Informer logic that needs no API server: relist diff, store indexes, slimming, reconnect backoff."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dbaasctl.kube.cache import (
    LAST_APPLIED,
    Backoff,
    DeletedFinalStateUnknown,
    Store,
    relist_deltas,
    slim,
)


def cm(name: str, rv: str, ns: str = "ns", **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv, "labels": labels}}


def test_relist_emits_adds_updates_and_tombstoned_deletes() -> None:
    old = {"ns/keep": cm("keep", "1"), "ns/change": cm("change", "2"), "ns/gone": cm("gone", "3")}
    new = {"ns/keep": cm("keep", "1"), "ns/change": cm("change", "9"), "ns/fresh": cm("fresh", "10")}
    deltas = {d.key: d for d in relist_deltas(old, new)}
    assert set(deltas) == {"ns/change", "ns/fresh", "ns/gone"}, "unchanged objects stay silent"
    assert deltas["ns/fresh"].type == "add"
    assert deltas["ns/change"].type == "update"
    assert deltas["ns/change"].old == old["ns/change"]
    assert deltas["ns/change"].new == new["ns/change"]
    gone = deltas["ns/gone"]
    assert gone.type == "delete"
    assert isinstance(gone.new, DeletedFinalStateUnknown)
    assert gone.new.key == "ns/gone"
    assert gone.new["metadata"]["name"] == "gone", "the tombstone still reads like the object"


states = st.dictionaries(
    st.sampled_from([f"ns/o{i}" for i in range(8)]), st.sampled_from(["1", "2", "3"]), max_size=8
)


@given(before=states, after=states)
def test_applying_relist_deltas_to_the_old_view_yields_the_new_view(
    before: dict[str, str], after: dict[str, str]
) -> None:
    old = {k: cm(k.split("/")[1], rv) for k, rv in before.items()}
    new = {k: cm(k.split("/")[1], rv) for k, rv in after.items()}
    view = dict(old)
    for d in relist_deltas(old, new):
        if d.type == "delete":
            assert d.key in view
            del view[d.key]
        else:
            assert (d.key in view) == (d.type == "update")
            view[d.key] = d.new
    assert view == new


def test_store_indexes_follow_updates_and_deletes() -> None:
    store = Store(
        {"by-app": lambda o: [o["metadata"]["labels"].get("app", "")] if o["metadata"]["labels"] else []}
    )
    store.set("ns/a", cm("a", "1", app="x"))
    store.set("ns/b", cm("b", "1", app="x"))
    store.set("ns/c", cm("c", "1", app="y"))
    assert store.index_keys("by-app", "x") == ["ns/a", "ns/b"]
    store.set("ns/a", cm("a", "2", app="y"))  # moves between index values
    assert store.index_keys("by-app", "x") == ["ns/b"]
    assert [o["metadata"]["name"] for o in store.by_index("by-app", "y")] == ["a", "c"]
    store.pop("ns/c")
    assert store.index_keys("by-app", "y") == ["ns/a"]
    store.replace({"ns/z": cm("z", "5", app="x")})
    assert store.index_values("by-app") == ["x"]
    assert store.keys() == ["ns/z"]


def test_indexer_added_later_covers_existing_objects_and_bad_index_fn_is_contained() -> None:
    store = Store()
    store.set("ns/a", cm("a", "1", app="x"))
    store.add_indexer("app", lambda o: [o["metadata"]["labels"]["app"]])
    assert store.index_keys("app", "x") == ["ns/a"]
    store.set("ns/b", cm("b", "1"))  # index fn raises KeyError: object stored, just not indexed
    assert "ns/b" in store
    with pytest.raises(ValueError, match="exists"):
        store.add_indexer("app", lambda o: [])
    with pytest.raises(KeyError):
        store.index_keys("missing", "x")


def test_slim_drops_managed_fields_and_last_applied_only() -> None:
    obj = {
        "metadata": {
            "name": "a",
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {LAST_APPLIED: "{...}", "keep": "me"},
        },
        "data": {"x": "1"},
    }
    slimmed = slim(obj)
    assert "managedFields" not in slimmed["metadata"]
    assert slimmed["metadata"]["annotations"] == {"keep": "me"}
    assert slimmed["data"] == {"x": "1"}
    only_last_applied = {"metadata": {"name": "b", "annotations": {LAST_APPLIED: "{}"}}}
    assert "annotations" not in slim(only_last_applied)["metadata"]


def test_backoff_doubles_to_the_cap_jitters_and_resets_after_quiet_period() -> None:
    now = [0.0]
    backoff = Backoff(clock=lambda: now[0], rand=lambda: 0.0)
    steps = [backoff.next() for _ in range(8)]
    assert steps == pytest.approx([0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0])
    jittered = Backoff(clock=lambda: now[0], rand=lambda: 0.999)
    assert jittered.next() == pytest.approx(0.8 * 1.999)
    now[0] += 121.0  # two minutes without trouble
    assert backoff.next() == pytest.approx(0.8)
