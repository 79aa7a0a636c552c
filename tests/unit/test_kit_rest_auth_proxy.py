"""API client gaps closed: a 401 re-reads a rotated token file; proxies from kubeconfig `proxy-url` and
from HTTP(S)_PROXY are used; a proxy kind we cannot speak is refused at start-up. Against a loopback
server that plays the API server (and, for the proxy tests, the proxy in front of an unresolvable host).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from dbaasctl.kube.config import ClientConfig, load_kubeconfig
from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.resources import CONFIGMAPS
from dbaasctl.kube.rest import KubeClient

#: A name that never resolves (RFC 6761): only a proxy can reach it.
UNREACHABLE = "http://api.invalid:6443"


class Server:
    def __init__(self) -> None:
        self.token = ""
        self.seen: list[tuple[str, str, str]] = []  # (Host header, path, Authorization)
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.seen.append((request.host.split(":")[0], request.path, auth))
        if self.token and auth != f"Bearer {self.token}":
            status = {"kind": "Status", "code": 401, "reason": "Unauthorized", "message": "Unauthorized"}
            return web.json_response(status, status=401)
        return web.json_response({"kind": "ConfigMap", "metadata": {"name": "a"}})


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    srv.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield srv
    await runner.cleanup()


def kubeconfig(tmp_path: Path, server: str, **cluster: str) -> Path:
    doc = {
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": {"token": "static-token-value"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


async def test_a_401_rereads_a_rotated_token_file_once(server: Server, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token-value\n", encoding="utf-8")
    server.token = "first-token-value"
    config = ClientConfig(host=f"http://127.0.0.1:{server.port}", token_file=str(token_file))
    async with KubeClient(config, registry=CollectorRegistry()) as client:
        await client.get(CONFIGMAPS.path("ns", "a"))
        token_file.write_text("second-token-value\n", encoding="utf-8")  # the kubelet rotated it
        server.token = "second-token-value"
        assert (await client.get(CONFIGMAPS.path("ns", "a")))["metadata"]["name"] == "a"
        assert [auth for _, _, auth in server.seen[1:]] == [
            "Bearer first-token-value",
            "Bearer second-token-value",
        ]
        server.token = "a-token-nobody-has"
        with pytest.raises(ApiError) as err:
            await client.get(CONFIGMAPS.path("ns", "a"))
    assert err.value.is_unauthorized
    assert len(server.seen) == 5, "one re-read per 401, not a loop"


async def test_kubeconfig_proxy_url_is_used(server: Server, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, UNREACHABLE, **{"proxy-url": f"http://127.0.0.1:{server.port}"})
    async with await KubeClient.from_config(path, registry=CollectorRegistry()) as client:
        await client.get(CONFIGMAPS.path("ns", "a"))
    assert server.seen == [("api.invalid", "/api/v1/namespaces/ns/configmaps/a", "Bearer static-token-value")]


async def test_proxy_from_the_environment_is_used(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with await KubeClient.from_config(
        kubeconfig(tmp_path, UNREACHABLE), registry=CollectorRegistry()
    ) as c:
        await c.get(CONFIGMAPS.path("ns", "a"))
    assert [host for host, _, _ in server.seen] == ["api.invalid"]


def test_a_socks_proxy_is_refused_at_start_up(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, UNREACHABLE, **{"proxy-url": "socks5://127.0.0.1:1080"})
    with pytest.raises(ValueError, match="only http and https proxies"):
        load_kubeconfig(str(path))
