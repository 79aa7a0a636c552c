"""How the REST client's requests leave the process: the proxy the environment names (looked up once),
the query string, and the size of asyncio's TLS read buffer."""

from __future__ import annotations

from asyncio import sslproto
from collections.abc import Mapping

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from dbaasctl.kube.api import Params

__all__ = ["TLS_READ_BUFFER", "encode_params", "env_proxy", "limit_tls_read_buffers"]

#: Bytes asyncio's TLS transport reads from the socket at once, and so keeps allocated for as long as
#: each connection lives (asyncio's own default is 256 KiB). A TLS record carries at most 16 KiB, so a
#: read still takes several records; over the connections of a busy operator (one per worker in flight,
#: one per watch, the Event writer) the default holds about 4 MB of the resident set.
TLS_READ_BUFFER = 64 * 1024


def limit_tls_read_buffers(size: int = TLS_READ_BUFFER) -> None:
    """Process-wide, for every TLS connection opened from now on (asyncio offers no per-connection
    setting): `dbaasctl run` calls it once at start-up."""
    sslproto.SSLProtocol.max_size = min(sslproto.SSLProtocol.max_size, size)


def env_proxy(url: str) -> tuple[str, aiohttp.BasicAuth | None] | None:
    """The proxy HTTPS_PROXY / HTTP_PROXY / NO_PROXY (and ~/.netrc for its credentials) give for the API
    server, read once per client as client-go does: left to aiohttp (`trust_env`), the same lookup
    would run in a worker thread on every request, a thread hop plus a netrc parse per call."""
    try:
        proxy, auth = get_env_proxy_for_url(URL(url))
    except LookupError:
        return None
    return str(proxy), auth


def encode_params(params: Params | None) -> list[tuple[str, str]]:
    if params is None:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    out: list[tuple[str, str]] = []
    for key, value in items:
        if value is None:
            continue
        if isinstance(value, bool):
            out.append((key, "true" if value else "false"))
        else:
            out.append((key, str(value)))
    return out
