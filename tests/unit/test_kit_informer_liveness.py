"""A hung API connection (a dead load balancer that accepts and never answers) must fail liveness.

The "server" is a real TCP listener that accepts connections and stays silent, which is exactly what a
zombie watcher sees; no HTTP is faked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from dbaasctl.kube.cache import Informer
from dbaasctl.kube.config import ClientConfig
from dbaasctl.kube.resources import CONFIGMAPS
from dbaasctl.kube.rest import KubeClient


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep the connection open, never reply

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port
    for w in held:
        w.close()
    server.close()
    await server.wait_closed()


async def test_stuck_list_call_is_reported_dead_and_recovers_nothing_silently(silent_server: int) -> None:
    client = KubeClient(ClientConfig(host=f"http://127.0.0.1:{silent_server}"), registry=CollectorRegistry())
    informer = Informer(client, CONFIGMAPS, namespace="ns", list_timeout=30, liveness_budget=0.3)
    informer.start()
    try:
        assert informer.check_alive() is None
        await asyncio.sleep(0.6)
        reason = informer.check_alive()
        assert reason is not None
        assert "no progress" in reason
        assert not informer.has_synced
        assert informer.health.alive
    finally:
        await informer.stop()
        await client.close()
    assert informer.check_alive() is None, "a deliberately stopped informer is not a dead one"


async def test_list_timeout_turns_into_a_retry(silent_server: int) -> None:
    client = KubeClient(ClientConfig(host=f"http://127.0.0.1:{silent_server}"), registry=CollectorRegistry())
    informer = Informer(client, CONFIGMAPS, namespace="ns", list_timeout=0.2)
    informer.start()
    try:
        await asyncio.sleep(0.5)
        assert "list: TimeoutError" in str(informer.health.last_error)
        assert informer.check_alive() is None, "retrying with backoff is progress"
    finally:
        await informer.stop()
        await client.close()
