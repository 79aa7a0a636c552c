"""An application using a Database's Secret while the operator rotates it: the proof that two-phase
rotation goes unnoticed.

Three loops share one view of the Secret, re-read from the API server every 100 ms the way an
application re-reads its mounted Secret file (when the Secret is deleted the last content stays, as a
mounted volume keeps it):

* `fresh`: every 100 ms a new connection with the current credentials, one query, close;
* `pooled`: one long-lived connection used every 100 ms, checked out like a pool with pre-ping does
  (a connection found dead, e.g. ended by retire, is replaced with the current credentials before the
  query runs; that is a reconnect, not a failure);
* `old`: after each change of credentials, the superseded ones are tried every 100 ms until refused,
  which measures the overlap (new credentials visible → old ones refused).

Failures record exception class names and usernames only, never a password.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.resources import SECRETS
from dbaasctl.kube.rest import KubeClient

TICK = 0.1

Connect = Callable[[dict[str, str]], Awaitable[Any]]
Query = Callable[[Any], Awaitable[None]]
Close = Callable[[Any], Awaitable[None]]


@dataclass
class Dbms:
    """How to log in, query and close for one DBMS; `refused` tells a refused login from other errors."""

    connect: Connect
    query: Query
    close: Close
    refused: Callable[[BaseException], bool]


@dataclass
class Overlap:
    old_user: str
    new_user: str
    seen_at: float
    refused_at: float | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.refused_at is None else self.refused_at - self.seen_at


@dataclass
class Tally:
    logins: int = 0
    login_failures: int = 0
    queries: int = 0
    query_failures: int = 0
    reconnects: int = 0
    failures: list[str] = field(default_factory=list)


class LiveClient:
    def __init__(self, kube: KubeClient, namespace: str, secret: str, dbms: Dbms) -> None:
        self.kube = kube
        self.path = SECRETS.path(namespace, secret)
        self.dbms = dbms
        self.current: dict[str, str] = {}
        self.fresh = Tally()
        self.pooled = Tally()
        self.overlaps: list[Overlap] = []
        self._old: list[tuple[Overlap, dict[str, str]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    async def start(self) -> None:
        await self._read()
        if not self.current:
            raise RuntimeError("the Secret does not exist yet")
        self._tasks = [
            asyncio.create_task(self._loop(self._read)),
            asyncio.create_task(self._loop(self._fresh)),
            asyncio.create_task(self._pool()),
            asyncio.create_task(self._loop(self._probe_old)),
        ]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _loop(self, step: Callable[[], Awaitable[None]]) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            await step()
            await asyncio.sleep(max(0.0, TICK - (time.monotonic() - started)))

    async def _read(self) -> None:
        try:
            secret = await self.kube.get(self.path)
        except ApiError as exc:
            if exc.is_not_found:
                return  # deleted: a mounted volume keeps the last content
            raise
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        if not data.get("password"):
            return
        if self.current and data["username"] != self.current.get("username"):
            overlap = Overlap(self.current["username"], data["username"], time.monotonic())
            self.overlaps.append(overlap)
            self._old.append((overlap, dict(self.current)))
        self.current = data

    async def _fresh(self) -> None:
        creds = dict(self.current)
        self.fresh.logins += 1
        try:
            conn = await self.dbms.connect(creds)
        except Exception as exc:
            self.fresh.login_failures += 1
            self.fresh.failures.append(f"login {creds['username']}: {type(exc).__name__}")
            return
        try:
            self.fresh.queries += 1
            await self.dbms.query(conn)
        except Exception as exc:
            self.fresh.query_failures += 1
            self.fresh.failures.append(f"query {creds['username']}: {type(exc).__name__}")
        finally:
            await _quietly(self.dbms.close(conn))

    async def _pool(self) -> None:
        conn: Any = None
        try:
            while not self._stop.is_set():
                conn = await self._checkout(conn)
                if conn is not None:
                    self.pooled.queries += 1
                    try:
                        await self.dbms.query(conn)
                    except Exception as exc:
                        self.pooled.query_failures += 1
                        self.pooled.failures.append(f"query: {type(exc).__name__}")
                await asyncio.sleep(TICK)
        finally:
            if conn is not None:
                await _quietly(self.dbms.close(conn))

    async def _checkout(self, conn: Any) -> Any:
        """The pooled connection after a pre-ping; replaced with the current credentials when dead."""
        if conn is not None:
            try:
                await self.dbms.query(conn)
                return conn
            except Exception:
                self.pooled.reconnects += 1
                await _quietly(self.dbms.close(conn))
        creds = dict(self.current)
        self.pooled.logins += 1
        try:
            return await self.dbms.connect(creds)
        except Exception as exc:
            self.pooled.login_failures += 1
            self.pooled.failures.append(f"login {creds['username']}: {type(exc).__name__}")
            return None

    async def _probe_old(self) -> None:
        for overlap, creds in list(self._old):
            try:
                conn = await self.dbms.connect(creds)
            except Exception as exc:
                if self.dbms.refused(exc):
                    overlap.refused_at = time.monotonic()
                    self._old.remove((overlap, creds))
                continue
            await _quietly(self.dbms.close(conn))

    def report(self, label: str) -> str:
        lines = [f"{label}: live client through {len(self.overlaps)} rotations"]
        for name, t in (("fresh connection every 100 ms", self.fresh), ("pooled connection", self.pooled)):
            lines.append(
                f"  {name}: {t.logins} logins ({t.login_failures} failed), {t.queries} queries "
                f"({t.query_failures} failed), {t.reconnects} reconnects"
            )
        for o in self.overlaps:
            seconds = "never refused" if o.seconds is None else f"{o.seconds:.2f} s"
            lines.append(f"  overlap {o.old_user} -> {o.new_user}: {seconds}")
        return "\n".join(lines)


async def _quietly(aw: Awaitable[Any]) -> None:
    try:
        await aw
    except Exception:  # closing a connection the server already ended
        return
