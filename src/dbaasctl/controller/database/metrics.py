"""The Database controller's own metrics; the gauges are derived from each pass's final status."""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry

from dbaasctl.observability import metrics as m

__all__ = ["DatabaseMetrics", "Op"]

Op = Literal["create", "rotate", "delete", "retire"]


class DatabaseMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.operations = m.counter(
            "dbaasctl_database_operations_total",
            "Database lifecycle operations by outcome (create, rotate, delete, retire; success or error).",
            ("operation", "result"),
            registry,
        )
        self.not_ready = m.gauge(
            "dbaasctl_databases_not_ready",
            "Databases whose Ready condition is not True, by reason.",
            ("reason",),
            registry,
        )
        self.deletes_failing = m.gauge(
            "dbaasctl_database_deletes_failing",
            "Databases being deleted whose delete procedure currently fails (they stay Terminating).",
            (),
            registry,
        )
        self.rotation_failing = m.gauge(
            "dbaasctl_database_rotations_failing",
            "Databases whose last rotation attempt (rotate, or retire of a two-phase rotation) failed.",
            (),
            registry,
        )
        for op in ("create", "rotate", "delete", "retire"):
            for result in ("success", "error"):
                self.operations.labels(op, result)
        self._not_ready: dict[str, str] = {}
        self._deleting: set[str] = set()
        self._rotating: set[str] = set()

    def count(self, op: Op, ok: bool) -> None:
        self.operations.labels(op, "success" if ok else "error").inc()

    def ready(self, key: str, status: str, reason: str) -> None:
        previous = self._not_ready.pop(key, None)
        if status != "True":
            self._not_ready[key] = reason
        if previous != self._not_ready.get(key):
            self._publish_not_ready(previous, self._not_ready.get(key))

    def _publish_not_ready(self, *touched: str | None) -> None:
        counts: dict[str, int] = {}
        for reason in self._not_ready.values():
            counts[reason] = counts.get(reason, 0) + 1
        for reason in {r for r in touched if r is not None}:
            self.not_ready.labels(reason).set(counts.get(reason, 0))

    def delete_failing(self, key: str, failing: bool) -> None:
        (self._deleting.add if failing else self._deleting.discard)(key)
        self.deletes_failing.set(len(self._deleting))

    def rotation_failed(self, key: str, failing: bool) -> None:
        (self._rotating.add if failing else self._rotating.discard)(key)
        self.rotation_failing.set(len(self._rotating))

    def observe(
        self, key: str, *, ready: tuple[str, str] | None, deleting: bool, rotate_failing: bool
    ) -> None:
        """Publish one Database's final state of a pass (Ready, failing delete, failing rotation)."""
        if ready is not None:
            self.ready(key, *ready)
        self.delete_failing(key, deleting and ready is not None and ready[1] == "DeleteFailed")
        self.rotation_failed(key, rotate_failing)

    def forget(self, key: str) -> None:
        previous = self._not_ready.pop(key, None)
        self._publish_not_ready(previous)
        self.delete_failing(key, False)
        self.rotation_failed(key, False)
