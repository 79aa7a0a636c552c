"""Prometheus registry helpers.

Components create their collectors through `counter` / `gauge` / `histogram` here instead of calling the
prometheus-client constructors directly, because those raise on a second registration of the same name.
A manager, a queue or an informer may be built more than once per process (tests, restarts after a lost
lease in a long-lived interpreter); get-or-create keeps that harmless while still catching a real clash
(same name, different type or labels).

Every collector lives in a `CollectorRegistry`; `default_registry()` is prometheus-client's global one,
which also carries the process/platform/GC collectors that dashboards expect. Tests pass a fresh registry.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import TypeVar

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

# controller-runtime exposes no `*_created` series; they double the cardinality of every counter.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Exactly the buckets controller-runtime uses, so upstream dashboards and alerts apply unchanged.
WORKQUEUE_BUCKETS: tuple[float, ...] = tuple(10.0**e for e in range(-8, 4))
RECONCILE_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
)  # fmt: skip
REST_CLIENT_BUCKETS: tuple[float, ...] = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)

_M = TypeVar("_M", bound=MetricWrapperBase)
_lock = threading.Lock()
_collectors: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, MetricWrapperBase]] = (
    weakref.WeakKeyDictionary()
)


def default_registry() -> CollectorRegistry:
    return prometheus_client.REGISTRY


def _get_or_create(
    kind: type[_M],
    name: str,
    documentation: str,
    labelnames: Sequence[str],
    registry: CollectorRegistry | None,
    **kwargs: object,
) -> _M:
    reg = registry if registry is not None else default_registry()
    with _lock:
        known = _collectors.setdefault(reg, {})
        existing = known.get(name)
        if existing is not None:
            if not isinstance(existing, kind) or tuple(existing._labelnames) != tuple(labelnames):
                raise ValueError(f"metric {name!r} already registered with another type or labels")
            return existing
        metric = kind(name, documentation, labelnames=tuple(labelnames), registry=reg, **kwargs)  # type: ignore[arg-type]
        known[name] = metric
        return metric


def counter(
    name: str, documentation: str, labelnames: Sequence[str] = (), registry: CollectorRegistry | None = None
) -> Counter:
    return _get_or_create(Counter, name, documentation, labelnames, registry)


def gauge(
    name: str, documentation: str, labelnames: Sequence[str] = (), registry: CollectorRegistry | None = None
) -> Gauge:
    return _get_or_create(Gauge, name, documentation, labelnames, registry)


def histogram(
    name: str,
    documentation: str,
    labelnames: Sequence[str] = (),
    buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    registry: CollectorRegistry | None = None,
) -> Histogram:
    return _get_or_create(Histogram, name, documentation, labelnames, registry, buckets=tuple(buckets))


def sample_value(
    registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None
) -> float | None:
    """Read one sample (e.g. `workqueue_adds_total`) — for tests, `dbaasctl check` and debugging."""
    value: float | None = registry.get_sample_value(name, labels or {})
    return value
