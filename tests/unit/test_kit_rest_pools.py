"""Watches must never take the connections ordinary requests (lease renewals) need.

Each watch holds one HTTP/1.1 connection for minutes. 60 watched namespaces with two informers each
are 120 open watches, more than a request pool's cap; a renewal queued behind them would wait until a
watch ends, the lease would lapse and leadership would be lost. Against a real loopback server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from dbaasctl.kube.config import ClientConfig
from dbaasctl.kube.resources import CONFIGMAPS, LEASES, SECRETS
from dbaasctl.kube.rest import KubeClient

NAMESPACES = 60


@pytest.fixture
async def api_server() -> AsyncIterator[tuple[int, list[str]]]:
    """Watches get their headers and then nothing (until the test ends); other requests answer at once."""
    open_watches: list[str] = []
    release = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") == "true":
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            open_watches.append(request.path)
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await release.wait()
            return resp
        return web.json_response({"kind": "Lease", "metadata": {"name": "lead", "resourceVersion": "1"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port, open_watches
    release.set()
    await runner.cleanup()


async def test_requests_get_a_connection_while_120_watches_are_open(
    api_server: tuple[int, list[str]],
) -> None:
    port, open_watches = api_server
    client = KubeClient(ClientConfig(host=f"http://127.0.0.1:{port}"), registry=CollectorRegistry())
    streams = [
        client.watch(resource.path(f"ns-{i}"), {"resourceVersion": "1"}, idle_timeout=None)
        for i in range(NAMESPACES)
        for resource in (CONFIGMAPS, SECRETS)
    ]
    try:
        opening = [asyncio.ensure_future(s.open()) for s in streams]
        async with asyncio.timeout(10):
            while len(open_watches) < len(streams):
                await asyncio.sleep(0.05)
        lease = await asyncio.wait_for(client.get(LEASES.path("ops", "lead")), 5)
        assert lease["metadata"]["name"] == "lead"
        await asyncio.gather(*opening)
    finally:
        for s in streams:
            await s.close()
        await client.close()
