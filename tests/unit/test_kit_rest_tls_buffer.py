"""The TLS read buffer each API connection keeps: asyncio's default (256 KiB per connection) is cut to
`TLS_READ_BUFFER`, and responses far larger than it still arrive whole. Real TLS on loopback."""

from __future__ import annotations

import ssl
from asyncio import sslproto
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from test_kit_client_cert_reload import make_ca

from dbaasctl.kube.config import ClientConfig
from dbaasctl.kube.rest import KubeClient
from dbaasctl.kube.transport import TLS_READ_BUFFER, limit_tls_read_buffers

#: A response of many buffers' worth (a LIST page of large objects).
BIG = {"items": [{"metadata": {"name": f"db-{i:05d}"}, "data": "x" * 500} for i in range(4000)]}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    ca = make_ca()
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    cert, key = ca.issue("127.0.0.1", server=True)
    (tmp_path / "server.crt").write_bytes(cert)
    (tmp_path / "server.key").write_bytes(key)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")

    async def big(_: web.Request) -> web.Response:
        return web.json_response(BIG)

    app = web.Application()
    app.router.add_get("/big", big)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"https://127.0.0.1:{port}", ca_file
    await runner.cleanup()


def _read_buffers(client: KubeClient) -> list[int]:
    """The TLS read buffer of every pooled connection of the client's request session."""
    sizes = []
    for conns in client._session.connector._conns.values():  # type: ignore[union-attr]
        for proto, *_ in conns:
            ssl_protocol: Any = proto.transport._ssl_protocol
            sizes.append(len(ssl_protocol._ssl_buffer))
    return sizes


async def _fetch(url: str, ca_file: Path) -> tuple[dict[str, Any], list[int]]:
    async with KubeClient(ClientConfig(host=url, ca_file=str(ca_file))) as client:
        body = await client.get("/big")
        return body, _read_buffers(client)


async def test_connections_keep_the_smaller_tls_read_buffer(
    server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", sslproto.SSLProtocol.max_size)  # restored after
    body, before = await _fetch(*server)
    assert body == BIG
    assert before
    assert min(before) > TLS_READ_BUFFER  # asyncio's default, which this is about

    limit_tls_read_buffers()
    body, after = await _fetch(*server)
    assert body == BIG  # ~2 MB through a 64 KiB buffer
    assert after
    assert max(after) == TLS_READ_BUFFER


def test_the_limit_never_raises_the_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", 16 * 1024)
    limit_tls_read_buffers()
    assert sslproto.SSLProtocol.max_size == 16 * 1024
