"""429 (API Priority and Fairness) is retried after its Retry-After a bounded number of times; other
errors are the caller's. Against a real HTTP server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from dbaasctl.kube.config import ClientConfig
from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.resources import CONFIGMAPS
from dbaasctl.kube.rest import KubeClient

Answer = Callable[[int], web.Response]


def throttled(_: int) -> web.Response:
    status = {"kind": "Status", "code": 429, "reason": "TooManyRequests", "message": "slow down"}
    return web.json_response(status, status=429, headers={"Retry-After": "0"})


def ok(_: int) -> web.Response:
    return web.json_response({"kind": "ConfigMap", "metadata": {"name": "a"}})


def broken(_: int) -> web.Response:
    return web.json_response({"kind": "Status", "code": 500, "reason": "InternalError"}, status=500)


@pytest.fixture
async def server() -> AsyncIterator[tuple[list[Answer], list[str], int]]:
    answers: list[Answer] = []
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.path)
        return answers.pop(0)(len(seen)) if answers else ok(len(seen))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield answers, seen, port
    await runner.cleanup()


async def test_throttled_requests_are_retried_then_succeed(
    server: tuple[list[Answer], list[str], int],
) -> None:
    answers, seen, port = server
    answers += [throttled, throttled]
    async with KubeClient(ClientConfig(host=f"http://127.0.0.1:{port}"), registry=CollectorRegistry()) as c:
        got = await c.get(CONFIGMAPS.path("ns", "a"))
    assert got["metadata"]["name"] == "a"
    assert len(seen) == 3


async def test_throttling_gives_up_after_the_retry_budget(
    server: tuple[list[Answer], list[str], int],
) -> None:
    answers, seen, port = server
    answers += [throttled] * 10
    config = ClientConfig(host=f"http://127.0.0.1:{port}")
    async with KubeClient(config, registry=CollectorRegistry(), max_429_retries=3) as c:
        with pytest.raises(ApiError) as err:
            await c.get(CONFIGMAPS.path("ns", "a"))
    assert err.value.is_too_many_requests
    assert len(seen) == 4


async def test_other_errors_are_not_retried(server: tuple[list[Answer], list[str], int]) -> None:
    answers, seen, port = server
    answers.append(broken)
    async with KubeClient(ClientConfig(host=f"http://127.0.0.1:{port}"), registry=CollectorRegistry()) as c:
        with pytest.raises(ApiError) as err:
            await c.get(CONFIGMAPS.path("ns", "a"))
    assert err.value.status == 500
    assert len(seen) == 1
