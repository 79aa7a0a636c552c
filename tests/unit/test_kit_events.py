"""Event aggregation rules, note hygiene and reference building (the I/O side is covered e2e)."""

from __future__ import annotations

import re

import pytest

from dbaasctl.kube.eventseries import NOTE_LIMIT, Aggregator, ObjectRef, clean_note, truncate_utf8
from dbaasctl.observability.logging import register_secret


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


KEY = ("uid-1", "Warning", "CreateFailed", "Create", "boom")


def test_first_event_creates_repeats_patch_a_growing_series() -> None:
    clock = FakeClock()
    agg = Aggregator(clock=clock)
    assert agg.observe(KEY).action == "create"
    agg.created(KEY, "db.1", "ns", "events")
    counts = []
    for _ in range(3):
        clock.now += 10
        decision = agg.observe(KEY)
        assert decision.action == "patch"
        assert decision.series is not None
        assert decision.series.name == "db.1"
        counts.append(decision.series.count)
    assert counts == [2, 3, 4]


def test_a_different_note_or_reason_is_a_different_event() -> None:
    agg = Aggregator(clock=FakeClock())
    agg.observe(KEY)
    agg.created(KEY, "db.1", "ns", "events")
    assert agg.observe((*KEY[:4], "other note")).action == "create"
    assert agg.observe(("uid-1", "Warning", "OtherReason", "Create", "boom")).action == "create"


def test_series_ends_after_the_window_and_a_repeat_starts_a_new_event() -> None:
    clock = FakeClock()
    agg = Aggregator(series_window=360, clock=clock)
    agg.observe(KEY)
    agg.created(KEY, "db.1", "ns", "events")
    clock.now += 361
    assert agg.observe(KEY).action == "create"


def test_spam_filter_per_object_and_filtered_repeats_still_count() -> None:
    clock = FakeClock()
    agg = Aggregator(spam_burst=3, spam_refill_seconds=300, clock=clock)
    assert agg.observe(KEY).action == "create"
    agg.created(KEY, "db.1", "ns", "events")
    assert agg.observe(KEY).action == "patch"
    assert agg.observe(KEY).action == "patch"
    assert agg.observe(KEY).action == "filtered"  # burst of 3 used up
    assert agg.observe(KEY).action == "filtered"
    other_object = ("uid-2", *KEY[1:])
    assert agg.observe(other_object).action == "create", "the filter is per object"
    clock.now += 300  # one token back
    decision = agg.observe(KEY)
    assert decision.action == "patch"
    assert decision.series is not None
    assert decision.series.count == 6, "filtered repeats were counted"


def test_forget_after_a_vanished_event_recreates_it() -> None:
    agg = Aggregator(clock=FakeClock())
    agg.observe(KEY)
    agg.created(KEY, "db.1", "ns", "events")
    agg.forget(KEY)
    assert agg.observe(KEY).action == "create"


def test_cache_is_bounded() -> None:
    agg = Aggregator(cache_size=2, clock=FakeClock())
    for i in range(3):
        key = (f"uid-{i}", *KEY[1:])
        agg.observe(key)
        agg.created(key, f"e{i}", "ns", "events")
    assert agg.observe(("uid-0", *KEY[1:])).action == "create", "the oldest series was evicted"


def test_truncate_utf8_respects_byte_limit_and_character_boundaries() -> None:
    text = "é" * 1000  # 2 bytes each
    out = truncate_utf8(text, NOTE_LIMIT)
    assert len(out.encode()) <= NOTE_LIMIT
    assert out.endswith("…")
    assert truncate_utf8("short", NOTE_LIMIT) == "short"


def test_note_is_scrubbed_before_it_can_reach_the_api() -> None:
    register_secret("s3cr3t-event-pw")
    note = "create failed for postgres://app:s3cr3t-event-pw@db:5432/x: password=s3cr3t-event-pw"
    cleaned = clean_note(note)
    assert "s3cr3t-event-pw" not in cleaned
    assert re.search(r"postgres://app:\*\*\*@db", cleaned)


def test_object_ref_from_a_cached_object() -> None:
    obj = {
        "apiVersion": "dbaasctl.io/v1",
        "kind": "Database",
        "metadata": {"name": "db", "namespace": "team", "uid": "u-1", "resourceVersion": "42"},
    }
    ref = ObjectRef.from_object(obj)
    assert ref.to_dict() == {
        "apiVersion": "dbaasctl.io/v1",
        "kind": "Database",
        "name": "db",
        "namespace": "team",
        "uid": "u-1",
        "resourceVersion": "42",
    }
    assert ref.identity == "u-1"
    cluster_scoped = ObjectRef("v1", "Namespace", "team")
    assert "namespace" not in cluster_scoped.to_dict()
    assert cluster_scoped.identity == "v1/Namespace//team"


@pytest.mark.parametrize("limit", [1, 3, 4, 5])
def test_truncate_tiny_limits_never_exceed(limit: int) -> None:
    assert len(truncate_utf8("abcdefgh", limit).encode()) <= limit


def test_events_in_a_terminating_or_missing_namespace_are_dropped_not_rerouted() -> None:
    """A 403 because the namespace is terminating is not an RBAC denial: no core/v1 fallback, no warning."""
    from dbaasctl.kube.errors import ApiError
    from dbaasctl.kube.events import _namespace_gone

    terminating = ApiError(
        403, "Forbidden", "unable to create new content in namespace x because it is being terminated"
    )
    missing = ApiError(404, "NotFound", 'namespaces "x" not found')
    rbac = ApiError(403, "Forbidden", 'events.events.k8s.io is forbidden: User "u" cannot create resource')
    unserved = ApiError(404, "NotFound", "the server could not find the requested resource")
    assert _namespace_gone(terminating)
    assert _namespace_gone(missing)
    assert not _namespace_gone(rbac)
    assert not _namespace_gone(unserved)
