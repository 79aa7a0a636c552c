"""Probe and metrics endpoints over a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from dbaasctl.observability import metrics as m
from dbaasctl.observability.http import (
    HealthChecks,
    HttpServer,
    LoopMonitor,
    add_probe_routes,
)
from dbaasctl.observability.metrics_endpoint import MetricsAuth, add_metrics_route


@pytest.fixture
async def probes() -> AsyncIterator[tuple[str, HealthChecks, HealthChecks]]:
    live, ready = HealthChecks("healthz"), HealthChecks("readyz")
    app = web.Application()
    add_probe_routes(app, live, ready)
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    yield f"http://127.0.0.1:{server.port}", live, ready
    await server.stop()


async def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, await resp.text()


async def test_probe_format_follows_controller_runtime(
    probes: tuple[str, HealthChecks, HealthChecks],
) -> None:
    base, live, ready = probes
    synced = False
    live.add("ping", lambda: None)
    ready.add("informers-synced", lambda: None if synced else "not synced: things")
    assert await fetch(f"{base}/healthz") == (200, "ok")
    status, body = await fetch(f"{base}/readyz")
    assert status == 500
    assert "[-]informers-synced failed: reason withheld" in body
    assert "not synced" not in body, "aggregate output withholds reasons"
    assert body.rstrip().endswith("readyz check failed")
    status, body = await fetch(f"{base}/readyz/informers-synced")
    assert (status, body) == (500, "internal server error: not synced: things\n")
    status, body = await fetch(f"{base}/readyz?exclude=informers-synced&verbose")
    assert status == 200
    assert "[+]informers-synced excluded: ok" in body
    synced = True
    assert await fetch(f"{base}/readyz") == (200, "ok")
    status, body = await fetch(f"{base}/readyz?verbose")
    assert status == 200
    assert "[+]informers-synced ok" in body
    assert (await fetch(f"{base}/healthz/nope"))[0] == 404


async def test_a_raising_check_fails_the_probe(probes: tuple[str, HealthChecks, HealthChecks]) -> None:
    base, live, _ = probes

    def broken() -> str | None:
        raise RuntimeError("bug")

    live.add("broken", broken)
    status, body = await fetch(f"{base}/healthz")
    assert status == 500
    assert "[-]broken failed" in body


async def test_loop_monitor_detects_a_stalled_loop() -> None:
    monitor = LoopMonitor(interval=0.05, max_lag=0.5, registry=CollectorRegistry())
    assert monitor.check() == "heartbeat task not running"
    monitor.start()
    await asyncio.sleep(0.15)
    assert monitor.check() is None
    time.sleep(1.2)  # block the loop, as a synchronous driver call would
    reason = monitor.check()
    assert reason is not None
    assert "stalled" in reason
    await asyncio.sleep(0.01)  # the heartbeat runs again and records the lag it suffered
    assert monitor.last_lag >= 0.8
    await asyncio.sleep(0.3)  # a few timely beats later the loop counts as healthy again
    assert monitor.check() is None
    await monitor.stop()


async def test_metrics_route_exposes_the_registry() -> None:
    registry = CollectorRegistry()
    m.counter("kit_test_things_total", "things", ("kind",), registry).labels(kind="x").inc(3)
    app = web.Application()
    add_metrics_route(app, registry)
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        status, body = await fetch(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        await server.stop()
    assert status == 200
    assert 'kit_test_things_total{kind="x"} 3.0' in body
    assert "_created" not in body


class Reviews:
    """Answers TokenReview / SubjectAccessReview as the API server would, counting calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.allowed_users = {"system:serviceaccount:mon:prometheus"}
        self.tokens = {"good": "system:serviceaccount:mon:prometheus", "norbac": "system:serviceaccount:x:y"}

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(body["kind"])
        if body["kind"] == "TokenReview":
            user = self.tokens.get(body["spec"]["token"])
            if user is None:
                return {"status": {"authenticated": False}}
            return {"status": {"authenticated": True, "user": {"username": user, "groups": ["g"]}}}
        assert body["spec"]["nonResourceAttributes"] == {"path": "/metrics", "verb": "get"}
        return {"status": {"allowed": body["spec"]["user"] in self.allowed_users}}


async def test_secure_metrics_status_codes_and_caching() -> None:
    now = [0.0]
    reviews = Reviews()
    auth = MetricsAuth(reviews.post, clock=lambda: now[0])
    app = web.Application()
    add_metrics_route(app, CollectorRegistry(), auth)
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        assert (await fetch(url))[0] == 401
        assert (await fetch(url, {"Authorization": "Basic Zm9vOmJhcg=="}))[0] == 401
        assert (await fetch(url, {"Authorization": "Bearer bogus"}))[0] == 401
        assert (await fetch(url, {"Authorization": "Bearer norbac"}))[0] == 403
        assert (await fetch(url, {"Authorization": "Bearer good"}))[0] == 200
        calls = len(reviews.calls)
        for _ in range(3):
            assert (await fetch(url, {"Authorization": "Bearer good"}))[0] == 200
            assert (await fetch(url, {"Authorization": "Bearer norbac"}))[0] == 403
        assert len(reviews.calls) == calls, "cached answers make no API calls"
        now[0] += 31  # deny cache (30 s) expired, allow cache (5 min) and authn cache (1 min) not
        reviews.allowed_users.add("system:serviceaccount:x:y")
        assert (await fetch(url, {"Authorization": "Bearer norbac"}))[0] == 200
        assert reviews.calls[calls:] == ["SubjectAccessReview"]
        now[0] += 60  # authn cache expired
        assert (await fetch(url, {"Authorization": "Bearer good"}))[0] == 200
        assert reviews.calls[-1] == "TokenReview"
    finally:
        await server.stop()


async def test_secure_metrics_review_failure_is_500() -> None:
    async def failing(path: str, body: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("api down")

    app = web.Application()
    add_metrics_route(app, CollectorRegistry(), MetricsAuth(failing))
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        status, _ = await fetch(f"http://127.0.0.1:{server.port}/metrics", {"Authorization": "Bearer x"})
    finally:
        await server.stop()
    assert status == 500


def test_metric_helpers_get_or_create_and_detect_clashes() -> None:
    registry = CollectorRegistry()
    a = m.counter("kit_clash_total", "x", ("a",), registry)
    assert m.counter("kit_clash_total", "x", ("a",), registry) is a
    with pytest.raises(ValueError, match="already registered"):
        m.gauge("kit_clash_total", "x", ("a",), registry)
    with pytest.raises(ValueError, match="already registered"):
        m.counter("kit_clash_total", "x", ("b",), registry)
