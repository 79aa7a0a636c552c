"""The Prometheus /metrics endpoint, optionally behind controller-runtime's authentication filter.

A bearer token is authenticated with a TokenReview and authorised with a SubjectAccessReview for the
non-resource `get` on the path, with caches (authn 1 min, allow 5 min, deny 30 s), so a scraper costs
the API server two reviews per cache period rather than two per scrape. This module does not know
Kubernetes; it is handed an async `post(path, body)` that performs the API call. The unauthenticated
probe endpoints live in `dbaasctl.observability.http`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from dbaasctl.observability import metrics as m

log = logging.getLogger(__name__)

PostJson = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class _Cached:
    value: Any
    expires: float


@dataclass
class _TtlCache:
    size: int = 4096
    _data: OrderedDict[str, _Cached] = field(default_factory=OrderedDict)

    def get(self, key: str, now: float) -> Any:
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit.expires <= now:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return hit.value

    def put(self, key: str, value: Any, ttl: float, now: float) -> None:
        self._data[key] = _Cached(value, now + ttl)
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)


@dataclass(frozen=True)
class _User:
    username: str
    uid: str
    groups: tuple[str, ...]
    extra: tuple[tuple[str, tuple[str, ...]], ...]


class AuthError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class MetricsAuth:
    """TokenReview + SubjectAccessReview, like controller-runtime's `WithAuthenticationAndAuthorization`."""

    TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
    ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

    def __init__(
        self,
        post: PostJson,
        *,
        authn_ttl: float = 60.0,
        allow_ttl: float = 300.0,
        deny_ttl: float = 30.0,
        review_timeout: float = 10.0,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._post = post
        self.authn_ttl, self.allow_ttl, self.deny_ttl = authn_ttl, allow_ttl, deny_ttl
        self.review_timeout = review_timeout
        self._clock = clock
        self._authn = _TtlCache(cache_size)
        self._authz = _TtlCache(cache_size)
        self.reviews = 0  # API calls made (cache effectiveness, tests)

    async def authenticate(self, token: str) -> _User | None:
        # Never keep or log the token itself: key the cache by its hash.
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._authn.get(digest, now)
        if cached is not None:
            return cached if isinstance(cached, _User) else None
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        self.reviews += 1
        async with asyncio.timeout(self.review_timeout):
            review = await self._post(self.TOKEN_REVIEWS, body)
        status = review.get("status") or {}
        user: _User | bool = False
        if status.get("authenticated"):
            info = status.get("user") or {}
            extra = info.get("extra") or {}
            user = _User(
                username=str(info.get("username") or ""),
                uid=str(info.get("uid") or ""),
                groups=tuple(info.get("groups") or ()),
                extra=tuple(sorted((str(k), tuple(v or ())) for k, v in extra.items())),
            )
        self._authn.put(digest, user, self.authn_ttl, now)
        return user if isinstance(user, _User) else None

    async def authorize(self, user: _User, path: str, verb: str) -> bool:
        key = "\x00".join([user.username, user.uid, ",".join(user.groups), repr(user.extra), path, verb])
        now = self._clock()
        cached = self._authz.get(key, now)
        if cached is not None:
            return bool(cached)
        spec: dict[str, Any] = {
            "user": user.username,
            "groups": list(user.groups),
            "nonResourceAttributes": {"path": path, "verb": verb},
        }
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra}
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        self.reviews += 1
        async with asyncio.timeout(self.review_timeout):
            review = await self._post(self.ACCESS_REVIEWS, body)
        allowed = bool((review.get("status") or {}).get("allowed"))
        self._authz.put(key, allowed, self.allow_ttl if allowed else self.deny_ttl, now)
        return allowed

    async def check(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, "Unauthorized")
        try:
            user = await self.authenticate(token)
        except Exception as exc:
            log.warning("metrics: TokenReview failed: %s", type(exc).__name__)
            raise AuthError(500, "Internal Server Error") from None
        if user is None:
            raise AuthError(401, "Unauthorized")
        try:
            allowed = await self.authorize(user, request.path, request.method.lower())
        except Exception as exc:
            log.warning("metrics: SubjectAccessReview failed: %s", type(exc).__name__)
            raise AuthError(500, "Internal Server Error") from None
        if not allowed:
            raise AuthError(
                403,
                f"Forbidden (user={user.username}, verb={request.method.lower()}, resource=, subresource=)",
            )


def add_metrics_route(
    app: web.Application, registry: CollectorRegistry | None = None, auth: MetricsAuth | None = None
) -> None:
    inner = make_aiohttp_handler(registry if registry is not None else m.default_registry())

    async def handle(request: web.Request) -> web.StreamResponse:
        if auth is not None:
            try:
                await auth.check(request)
            except AuthError as err:
                return web.Response(status=err.status, text=err.text + "\n")
        return await inner(request)

    app.router.add_get("/metrics", handle)
