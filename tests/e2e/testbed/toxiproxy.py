"""Toxiproxy on loopback: TCP proxies whose links the reliability suite breaks on purpose.

The operator reaches the API server and each DBMS through a proxy; a scenario adds a *toxic* to a proxy
at the moment it wants a fault (for example while a create procedure sleeps on the server, so the writes
that record it are the ones that fail) and removes it again. Faults happen at the TCP level, below every
client library, exactly where a flaky network or a restarted load balancer would put them.

The server is the pinned upstream build from tests/e2e/controlplane/build.sh; this module speaks its
HTTP API with urllib (a dozen requests per scenario do not justify a client dependency).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import port_for

from testbed.controlplane import binaries_dir
from testbed.process import Service

__all__ = ["Proxy", "Toxiproxy", "ToxiproxyError"]

Stream = Literal["upstream", "downstream"]


class ToxiproxyError(RuntimeError):
    pass


def _free_port() -> int:
    return int(port_for.select_random())


@dataclass(frozen=True)
class Proxy:
    """One proxy: clients connect to `port` on 127.0.0.1, Toxiproxy forwards to `upstream`."""

    server: Toxiproxy
    name: str
    port: int
    upstream: str

    @property
    def listen(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(
        self, toxic: str, kind: str, stream: Stream = "downstream", toxicity: float = 1.0, **attributes: int
    ) -> None:
        """Add a toxic (applies to open connections as well as new ones)."""
        self.server.request(
            "POST",
            f"/proxies/{self.name}/toxics",
            {
                "name": toxic,
                "type": kind,
                "stream": stream,
                "toxicity": toxicity,
                "attributes": attributes,
            },
        )

    def remove(self, toxic: str) -> None:
        self.server.request("DELETE", f"/proxies/{self.name}/toxics/{toxic}")

    def disable(self) -> None:
        """Stop listening and close every connection, data still held by a toxic included (a request
        delayed by `latency` never arrives)."""
        self.server.request("POST", f"/proxies/{self.name}", {"enabled": False})

    def enable(self) -> None:
        self.server.request("POST", f"/proxies/{self.name}", {"enabled": True})

    def toxics(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.server.request("GET", f"/proxies/{self.name}/toxics")
        return found

    @contextmanager
    def toxic(
        self, kind: str, stream: Stream = "downstream", toxicity: float = 1.0, **attributes: int
    ) -> Iterator[None]:
        """The toxic for the duration of the block; removed on success and on failure."""
        name = f"{kind}_{stream}"
        self.add(name, kind, stream, toxicity, **attributes)
        try:
            yield
        finally:
            self.remove(name)

    # The failure kinds the suite injects, named for what the peer sees.
    def latency(self, ms: int, stream: Stream = "downstream", jitter: int = 0) -> Any:
        return self.toxic("latency", stream, latency=ms, jitter=jitter)

    def drop_responses(self, close_after_ms: int) -> Any:
        """Requests reach the server; its answers are swallowed and the connection closed after a while
        (`timeout` toxic on the server-to-client stream): the write happened, the client cannot know."""
        return self.toxic("timeout", "downstream", timeout=close_after_ms)

    def reset(self, after_ms: int = 0, stream: Stream = "upstream") -> Any:
        """Connections are reset (RST) `after_ms` after data arrives (`reset_peer`)."""
        return self.toxic("reset_peer", stream, timeout=after_ms)

    def bandwidth(self, kb_per_s: int, stream: Stream = "downstream") -> Any:
        return self.toxic("bandwidth", stream, rate=kb_per_s)

    def limit_data(self, nbytes: int, stream: Stream = "downstream") -> Any:
        """Each connection is closed once `nbytes` went through (`limit_data`)."""
        return self.toxic("limit_data", stream, bytes=nbytes)


class Toxiproxy:
    """A toxiproxy-server child on a free loopback port; `proxy()` adds proxies on free ports."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proxies: dict[str, Proxy] = {}
        self.service = Service(
            "toxiproxy",
            [str(binaries_dir() / "toxiproxy-server"), "-host", "127.0.0.1", "-port", str(self.port)],
            workdir / f"toxiproxy-{self.port}.log",
            self._ready,
            start_timeout=30,
            stop_timeout=10,
            env={"LOG_LEVEL": "warn"},
        )

    def _ready(self) -> bool:
        return isinstance(self.request("GET", "/version"), (str, dict))

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                text = resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            raise ToxiproxyError(f"{method} {path}: {exc.code} {exc.read().decode('utf-8')[:300]}") from exc
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text

    def start(self) -> Toxiproxy:
        self.service.start()
        return self

    def stop(self) -> None:
        self.service.stop()

    def __enter__(self) -> Toxiproxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def proxy(self, name: str, upstream: str) -> Proxy:
        """A proxy on a port the kernel picks (no race with other processes choosing free ports)."""
        made = self.request(
            "POST", "/proxies", {"name": name, "listen": "127.0.0.1:0", "upstream": upstream, "enabled": True}
        )
        port = int(str(made["listen"]).rsplit(":", 1)[1])
        proxy = Proxy(self, name, port, upstream)
        self.proxies[name] = proxy
        return proxy

    def heal(self) -> None:
        """Every proxy enabled, every toxic gone (between scenarios, and after a failed one)."""
        self.request("POST", "/reset")
