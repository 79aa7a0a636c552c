"""A deliberately thin API client for the benchmark driver and the raw baseline.

The driver must not be the bottleneck it measures, and the raw baseline must not borrow the operator's
machinery, so both talk HTTP to the API server directly: one aiohttp session, a bearer token, JSON in
and out, and a per-verb request count (the raw baseline exports it under the operator's metric name).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

JsonDict = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
DATABASES = "/apis/dbaasctl.io/v1/namespaces/{ns}/databases"
SECRETS = "/api/v1/namespaces/{ns}/secrets"


class ApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        # The body is the API server's Status message: names and reasons, never request data.
        super().__init__(f"{method} {path}: {status} {body[:300]}")
        self.status = status


class Gone(Exception):
    """The watch's resourceVersion is too old (410): relist."""


class Api:
    def __init__(
        self,
        server: str,
        token: str,
        ca_file: str | Path,
        *,
        connections: int = 64,
        on_request: Callable[[str, int], None] | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._ssl = ssl.create_default_context(cafile=str(ca_file))
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._on_request = on_request
        #: (method, status code) → requests sent; watches count once, when opened.
        self.requests: Counter[tuple[str, int]] = Counter()

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(limit=self._connections, ssl=self._ssl)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self._headers, timeout=aiohttp.ClientTimeout(total=None)
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use `async with Api(...)`")
        return self._session

    def _count(self, method: str, status: int) -> None:
        self.requests[(method, status)] += 1
        if self._on_request is not None:
            self._on_request(method, status)

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
        ok_missing: bool = False,
        timeout: float = 60.0,
        retries: int = 5,
    ) -> JsonDict | None:
        """One request; the decoded answer, None for a 404 when `ok_missing`. Raises ApiError otherwise.

        429 and 503 mean the API server did not act (e.g. "storage is (re)initializing" right after a
        CRD changed): those are retried after Retry-After, every attempt counted as a request."""
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        headers = {"Content-Type": content_type} if data is not None else None
        for attempt in range(retries + 1):
            async with self.session.request(
                method,
                self.server + path,
                data=data,
                headers=headers,
                params=params,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                self._count(method, resp.status)
                text = await resp.text()
                if resp.status in (429, 503) and attempt < retries:
                    await asyncio.sleep(_retry_after(resp.headers.get("Retry-After")))
                    continue
                if resp.status == 404 and ok_missing:
                    return None
                if resp.status >= 300:
                    raise ApiError(method, path, resp.status, text)
                result: JsonDict = json.loads(text) if text else {}
                return result
        raise AssertionError("unreachable")

    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> JsonDict:
        result = await self.request("GET", path, params=params)
        assert result is not None
        return result

    async def post(self, path: str, body: Mapping[str, Any]) -> JsonDict:
        result = await self.request("POST", path, body)
        assert result is not None
        return result

    async def merge_patch(
        self, path: str, body: Mapping[str, Any], *, ok_missing: bool = False
    ) -> JsonDict | None:
        return await self.request("PATCH", path, body, content_type=MERGE_PATCH, ok_missing=ok_missing)

    async def delete(self, path: str, *, ok_missing: bool = True) -> JsonDict | None:
        return await self.request("DELETE", path, ok_missing=ok_missing)

    async def watch(
        self, path: str, resource_version: str, *, timeout_seconds: int = 1800
    ) -> AsyncIterator[JsonDict]:
        """Watch events from `resource_version` until the server ends the stream; raises Gone on 410."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        async with self.session.get(
            self.server + path,
            params=params,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 60),
        ) as resp:
            self._count("GET", resp.status)
            if resp.status == 410:
                raise Gone(path)
            if resp.status >= 300:
                raise ApiError("WATCH", path, resp.status, await resp.text())
            async for line in resp.content:
                if not line.strip():
                    continue
                event: JsonDict = json.loads(line)
                if event.get("type") == "ERROR":
                    if (event.get("object") or {}).get("code") == 410:
                        raise Gone(path)
                    raise ApiError(
                        "WATCH", path, int((event.get("object") or {}).get("code") or 500), str(event)
                    )
                yield event


def _retry_after(value: str | None) -> float:
    try:
        return min(5.0, max(0.1, float(value or 1)))
    except ValueError:
        return 1.0


async def gather_limited(limit: int, jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run coroutine factories with at most `limit` in flight; results in order, exceptions returned."""
    sem = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Any]) -> Any:
        async with sem:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs), return_exceptions=True))
