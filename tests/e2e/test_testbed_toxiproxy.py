"""The fault injector and the exactly-once judge do what the reliability suite relies on.

Toxiproxy runs for real in front of a small echo server on loopback: each toxic the suite uses is shown
to break the link the way the scenarios assume (no wall-clock assertion: latency is shown by ordering,
not by a duration). The judge (testbed.intents) is fed server call records and Databases by hand.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.controlplane import binaries_dir
from testbed.intents import count_intents
from testbed.invariants import Call
from testbed.toxiproxy import Proxy, Toxiproxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Toxiproxy(tmp_path_factory.mktemp("toxiproxy")) as tp:
            yield tp.proxy("echo", f"127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


def _connect(proxy: Proxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=10)


def _roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def test_pinned_build(tmp_path: Path) -> None:
    import subprocess

    out = subprocess.run(
        [str(binaries_dir() / "toxiproxy-server"), "--version"], capture_output=True, text=True, check=True
    )
    assert "toxiproxy-server version 2.5.0" in out.stdout


def test_clean_link_passes_data(proxy: Proxy) -> None:
    with _connect(proxy) as sock:
        assert _roundtrip(sock, b"hello") == b"hello"


def _talk_until_cut(proxy: Proxy) -> None:
    with _connect(proxy) as sock:
        for _ in range(50):
            if _roundtrip(sock, b"x") != b"x":
                raise ConnectionResetError("closed without an answer")


def test_reset_peer_resets(proxy: Proxy) -> None:
    with proxy.reset(after_ms=0, stream="downstream"), pytest.raises(ConnectionError):
        _talk_until_cut(proxy)
    with _connect(proxy) as sock:
        assert _roundtrip(sock, b"healed") == b"healed"


def test_dropped_responses_reach_the_server_but_not_the_client(proxy: Proxy) -> None:
    with _connect(proxy) as sock, proxy.drop_responses(close_after_ms=500):
        sock.sendall(b"lost")
        assert sock.recv(4096) == b""  # closed without an answer
    with _connect(proxy) as sock:
        assert _roundtrip(sock, b"back") == b"back"


def test_limit_data_cuts_the_connection(proxy: Proxy) -> None:
    with proxy.limit_data(8), _connect(proxy) as sock:
        assert len(_roundtrip(sock, b"0123456789abcdef")) <= 8


def test_latency_delays_without_losing(proxy: Proxy) -> None:
    """A fast link answers a second connection first: proven by order, not by a clock."""
    with _connect(proxy) as slow_sock:
        with proxy.latency(1500):
            slow_sock.sendall(b"slow")
            slow_sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                slow_sock.recv(4096)  # held by the toxic
            slow_sock.settimeout(10)
        assert slow_sock.recv(4096) == b"slow"


# -- the judge -----------------------------------------------------------------------------------------


def _db(name: str, *, generation: int = 1, provisioned: bool = True, endpoint: str = "pg") -> dict[str, Any]:
    status: dict[str, Any] = {"endpoint": endpoint, "credentialGeneration": generation}
    if provisioned:
        status["provisionedAt"] = "2026-01-01T00:00:10Z"
    return {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"endpoint": endpoint},
        "status": status,
    }


T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def _calls(*ops: tuple[str, str]) -> list[Call]:
    return [Call(i, op, "ns", name, T0 + 1 + i) for i, (op, name) in enumerate(ops)]


def test_judge_accepts_one_call_per_intent() -> None:
    dbs = {"ns/a": _db("a", generation=3), "ns/b": _db("b")}
    calls = _calls(("create", "a"), ("rotate", "a"), ("rotate", "a"), ("create", "b"))
    out = count_intents(calls, dbs, ["pg"], {"ns/gone": {"delete": 1}})
    assert out.violations == []
    assert out.repeats == 0
    assert out.intents == 4  # two creates, two rotations


def test_judge_counts_a_second_create_and_a_lost_rotation_record() -> None:
    dbs = {"ns/a": _db("a", generation=2)}
    calls = _calls(("create", "a"), ("create", "a"), ("rotate", "a"), ("rotate", "a"))
    out = count_intents(calls, dbs, ["pg"], {})
    assert out.repeats == 2
    assert [(k, op) for k, op, _ in out.violations] == [("ns/a", "create"), ("ns/a", "rotate")]


def test_judge_holds_deletes_and_ignores_other_servers_and_earlier_incarnations() -> None:
    dbs = {"ns/a": _db("a"), "ns/m": _db("m", endpoint="maria")}
    old = Call(0, "create", "ns", "a", T0 - 100)  # a Database of the same name, deleted long ago
    calls = [old, *_calls(("create", "a"), ("delete", "g"), ("delete", "g"))]
    out = count_intents(calls, dbs, ["pg"], {"ns/g": {"delete": 1}, "ns/m": {"create": 1}})
    assert [(k, op) for k, op, _ in out.violations] == [("ns/g", "delete")]
    assert out.repeats == 1
