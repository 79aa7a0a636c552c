"""An application using a Database's Secret while the operator rotates it: the proof that two-phase
rotation goes unnoticed by an application that follows the Secret.

Loops share one view of the Secret, re-read from the API server every 100 ms the way an application
re-reads its mounted Secret file (when the Secret is deleted the last content stays, as a mounted
volume keeps it):

* `fresh`: every 100 ms a new connection with the current credentials, one query, close;
* `pooled`: one long-lived connection used every 100 ms, checked out the way a pool that follows the
  Secret does: a connection opened with superseded credentials is closed at its next checkout and
  replaced with the current ones (`recycled`), so none is left for retire to end (a pool whose
  connections live shorter than the grace period behaves the same);
* `prepinged`: one long-lived connection checked out with a pre-ping only: it keeps the superseded
  login until retire ends its session, then the pre-ping replaces it (`reconnects`). A query sent in
  the instant between a successful pre-ping and the end of the session fails: what ending sessions
  means for an application that ignores the Secret, counted and never more than one per retire;
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
    recycled: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class _Held:
    """A pooled connection and the login it was opened with."""

    conn: Any
    username: str


class LiveClient:
    def __init__(self, kube: KubeClient, namespace: str, secret: str, dbms: Dbms) -> None:
        self.kube = kube
        self.path = SECRETS.path(namespace, secret)
        self.dbms = dbms
        self.current: dict[str, str] = {}
        self.fresh = Tally()
        self.pooled = Tally()
        self.prepinged = Tally()
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
            asyncio.create_task(self._pool(self.pooled, follow_secret=True)),
            asyncio.create_task(self._pool(self.prepinged, follow_secret=False)),
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

    async def _pool(self, tally: Tally, *, follow_secret: bool) -> None:
        held: _Held | None = None
        try:
            while not self._stop.is_set():
                held = await self._checkout(held, tally, follow_secret)
                if held is not None:
                    tally.queries += 1
                    try:
                        await self.dbms.query(held.conn)
                    except Exception as exc:
                        tally.query_failures += 1
                        tally.failures.append(f"query {held.username}: {type(exc).__name__}")
                await asyncio.sleep(TICK)
        finally:
            if held is not None:
                await _quietly(self.dbms.close(held.conn))

    async def _checkout(self, held: _Held | None, tally: Tally, follow_secret: bool) -> _Held | None:
        """The held connection after a pre-ping; replaced with the current credentials when dead or,
        for a pool that follows the Secret, when opened with credentials the Secret no longer holds."""
        if held is not None:
            if follow_secret and held.username != self.current.get("username"):
                tally.recycled += 1
                await _quietly(self.dbms.close(held.conn))
            else:
                try:
                    await self.dbms.query(held.conn)
                    return held
                except Exception:
                    tally.reconnects += 1
                    await _quietly(self.dbms.close(held.conn))
        creds = dict(self.current)
        tally.logins += 1
        try:
            return _Held(await self.dbms.connect(creds), creds["username"])
        except Exception as exc:
            tally.login_failures += 1
            tally.failures.append(f"login {creds['username']}: {type(exc).__name__}")
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
        tallies = (
            ("fresh connection every 100 ms", self.fresh),
            ("pooled connection following the Secret", self.pooled),
            ("pooled connection with pre-ping only", self.prepinged),
        )
        for name, t in tallies:
            lines.append(
                f"  {name}: {t.logins} logins ({t.login_failures} failed), {t.queries} queries "
                f"({t.query_failures} failed), {t.recycled} recycled, {t.reconnects} reconnects"
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
