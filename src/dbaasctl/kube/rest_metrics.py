"""The API client's request metrics (names and labels as client-go exports them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from dbaasctl.observability import metrics as m

__all__ = ["RestMetrics"]


class RestMetrics:
    """client-go's rest_client metrics, as its dashboards and alerts know them."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = m.counter(
            "rest_client_requests_total",
            "Number of HTTP requests, partitioned by status code, method, and host.",
            ("code", "method", "host"),
            registry,
        )
        self.latency = m.histogram(
            "rest_client_request_duration_seconds",
            "Request latency in seconds. Broken down by verb, and host.",
            ("verb", "host"),
            m.REST_CLIENT_BUCKETS,
            registry,
        )
        # Labelled children, looked up once: `labels()` takes a lock and builds a key on every call, and
        # this runs for every request.
        self._counters: dict[tuple[str, str, str], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, code: str, host: str, seconds: float) -> None:
        counter = self._counters.get((method, code, host))
        if counter is None:
            counter = self._counters[method, code, host] = self.requests.labels(
                code=code, method=method, host=host
            )
        histogram = self._histograms.get((method, host))
        if histogram is None:
            histogram = self._histograms[method, host] = self.latency.labels(verb=method, host=host)
        counter.inc()
        histogram.observe(seconds)
