"""A watch request as an async iterator of decoded events.

The stream applies a per-line idle timeout (a silent stream behind a load balancer is detected instead
of hanging forever) and turns ERROR events and non-2xx answers into `ApiError`s, so a consumer sees one
of three endings: a normal close, an ApiError (410 Gone in particular), or `WatchIdleTimeout`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

import aiohttp

import dbaasctl.kube.jsoncodec as jsoncodec
from dbaasctl.kube.errors import ApiError, WatchIdleTimeout, error_from_response
from dbaasctl.kube.resources import JsonDict

#: Sends the watch GET with the given timeouts and returns the response before reading its body.
Opener = Callable[[aiohttp.ClientTimeout], Awaitable[aiohttp.ClientResponse]]


class WatchStream:
    """One watch request. Ends (StopAsyncIteration) when the server closes the stream normally.

    Raises `ApiError` for a non-2xx answer and for an ERROR event (410 Expired in particular), and
    `WatchIdleTimeout` when nothing, not even a bookmark, arrived for `idle_timeout` seconds.
    """

    def __init__(
        self,
        opener: Opener,
        path: str,
        *,
        idle_timeout: float | None,
        connect_timeout: float,
    ) -> None:
        self._opener = opener
        self.path = path
        self._idle_timeout = idle_timeout
        self._connect_timeout = connect_timeout
        self._resp: aiohttp.ClientResponse | None = None
        self._buffer = bytearray()
        self._scanned = 0
        self._finished = False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __aiter__(self) -> Self:
        return self

    async def open(self) -> None:
        if self._resp is not None or self._finished:
            return
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._connect_timeout, sock_connect=self._connect_timeout, sock_read=None
        )
        # The response headers must come within the idle budget too.
        async with asyncio.timeout(self._idle_timeout):
            resp = await self._opener(timeout)
        if resp.status != 200:
            try:
                raise await error_from_response(resp, "GET", self.path)
            finally:
                resp.release()
        self._resp = resp

    async def close(self) -> None:
        self._finished = True
        resp, self._resp = self._resp, None
        if resp is not None:
            resp.close()

    async def _read_line(self) -> bytes | None:
        assert self._resp is not None
        # Lines are split here rather than by aiohttp's readline, which caps a line at 2 x read_bufsize.
        while True:
            newline = self._buffer.find(b"\n", self._scanned)
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                self._scanned = 0
                if line.strip():
                    return line
                continue
            self._scanned = len(self._buffer)
            try:
                async with asyncio.timeout(self._idle_timeout):
                    chunk = await self._resp.content.readany()
            except TimeoutError:
                raise WatchIdleTimeout(f"watch {self.path}: silent for {self._idle_timeout}s") from None
            if not chunk:
                rest = bytes(self._buffer)
                self._buffer.clear()
                return rest if rest.strip() else None
            self._buffer += chunk

    async def __anext__(self) -> JsonDict:
        if self._finished:
            raise StopAsyncIteration
        if self._resp is None:
            await self.open()
        try:
            line = await self._read_line()
        except BaseException:
            await self.close()
            raise
        if line is None:
            await self.close()
            raise StopAsyncIteration
        event = jsoncodec.loads(line)
        if not isinstance(event, dict):
            raise ApiError(500, "InternalError", "malformed watch event", method="GET", path=self.path)
        if event.get("type") == "ERROR":
            obj = event.get("object") or {}
            await self.close()
            raise ApiError.from_status(obj, method="GET", path=self.path)
        if "type" not in event and "code" in event:  # a bare Status line
            await self.close()
            raise ApiError.from_status(event, method="GET", path=self.path)
        return event
