"""The REST client: JSON dicts over one aiohttp session to one API server, with client-go's REST metrics.

The generated `kubernetes_asyncio` APIs are not used for requests: their methods reject query parameters
they do not know (`sendInitialEvents`, ...), their models crash on watch bookmarks and legacy Events,
they pick the wrong PATCH content type for custom resources, and a streamed (watch) response is not
checked for errors. Speaking HTTP here also gives every request an explicit timeout and a place to count
it (`rest_client_requests_total{code,method,host}`, `rest_client_request_duration_seconds`).
Configuration comes from `kube.config`; watch streams are `kube.watch.WatchStream`s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
from prometheus_client import CollectorRegistry

import dbaasctl.kube.jsoncodec as jsoncodec
from dbaasctl.kube.api import Params, PatchType
from dbaasctl.kube.auth import Authenticator
from dbaasctl.kube.clientcert import ClientCertificate
from dbaasctl.kube.config import ClientConfig, load_config, ssl_context
from dbaasctl.kube.errors import ApiError, error_from_response
from dbaasctl.kube.resources import JsonDict
from dbaasctl.kube.rest_metrics import RestMetrics
from dbaasctl.kube.transport import encode_params, env_proxy
from dbaasctl.kube.watch import WatchStream
from dbaasctl.observability import metrics as m
from dbaasctl.observability.logging import trace

log = logging.getLogger(__name__)

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}

DEFAULT_TIMEOUT = 30.0
#: Connections for ordinary requests; watches have their own, uncapped pool (one connection each).
REQUEST_CONNECTIONS = 100
# Objects are capped at ~1.5 MiB by etcd; a watch line is one object plus an envelope.
READ_BUFSIZE = 2**21
#: Without a Retry-After, a throttled request waits this long; a longer Retry-After is capped here.
THROTTLE_DEFAULT_WAIT = 1.0
THROTTLE_MAX_WAIT = 10.0


def _retry_after_wait(exc: ApiError) -> float:
    hint = exc.retry_after
    return min(THROTTLE_DEFAULT_WAIT if hint is None else hint, THROTTLE_MAX_WAIT)


class KubeClient:
    """One aiohttp session to one API server. Create it inside the running loop; `close()` it at the end."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        registry: CollectorRegistry | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_429_retries: int = 3,
        loader: Any = None,
    ) -> None:
        self.config = config
        self.base_url = config.host
        self.host_label = urlsplit(config.host).netloc
        self.timeout = timeout
        self.max_429_retries = max_429_retries
        self.registry = registry if registry is not None else m.default_registry()
        self._metrics = RestMetrics(self.registry)
        self.auth = Authenticator(config, loader)
        tls = ssl_context(config)
        self._tls = tls
        self.client_cert = (
            ClientCertificate(tls, config.cert_file, config.key_file)
            if config.cert_file and isinstance(tls, ssl.SSLContext)
            else None
        )
        self._retiring: set[asyncio.Task[None]] = set()
        self._retired: list[aiohttp.ClientSession] = []
        # Two pools: a watch holds its connection for minutes, so watches on many namespaces would take
        # every connection of a shared pool and leave lease renewals waiting until the lease lapses.
        self._session = self._new_session(REQUEST_CONNECTIONS, tls)
        self._watch_session = self._new_session(0, tls)
        self._server_hostname = config.tls_server_name
        self._env_proxy = None if config.proxy_url else env_proxy(config.host)

    @staticmethod
    def _new_session(limit: int, tls: ssl.SSLContext | bool) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, ssl=tls),
            # HTTPS_PROXY / HTTP_PROXY / NO_PROXY are honoured as client-go does, read once (`env_proxy`).
            trust_env=False,
            read_bufsize=READ_BUFSIZE,
            timeout=aiohttp.ClientTimeout(total=None),
        )

    @classmethod
    async def from_config(
        cls,
        kubeconfig: str | os.PathLike[str] | None = None,
        *,
        context: str | None = None,
        token: str | None = None,
        registry: CollectorRegistry | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> KubeClient:
        """Client from kubeconfig (path, $KUBECONFIG, ~/.kube/config) or in-cluster; `token` overrides auth."""
        config, loader = await load_config(kubeconfig, context, token)
        log.debug("kube client configured from %s for %s", config.source, config.host)
        return cls(config, registry=registry, timeout=timeout, loader=loader)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.auth.close()
        for task in list(self._retiring):
            task.cancel()
        for session in (self._session, self._watch_session, *self._retired):
            if not session.closed:
                await session.close()

    @property
    def closed(self) -> bool:
        return self._session.closed

    def _observe(self, method: str, code: str, started: float) -> None:
        self._metrics.observe(method, code, self.host_label, time.monotonic() - started)

    async def _open(
        self,
        method: str,
        path: str,
        params: Params | None,
        body: Any,
        content_type: str | None,
        timeout: aiohttp.ClientTimeout,
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> aiohttp.ClientResponse:
        if self.client_cert is not None and self.client_cert.refresh():
            self._renew_request_pool()
        headers = {"Accept": "application/json", **await self.auth.headers()}
        data: bytes | None = None
        if body is not None:
            data = jsoncodec.dumps(body)
            headers["Content-Type"] = content_type or "application/json"
        started = time.monotonic()
        kwargs: dict[str, Any] = {}
        if self._server_hostname:
            kwargs["server_hostname"] = self._server_hostname
        if self.config.proxy_url:
            kwargs["proxy"] = self.config.proxy_url
        elif self._env_proxy is not None:
            kwargs["proxy"], kwargs["proxy_auth"] = self._env_proxy
        try:
            resp = await (session or self._session).request(
                method,
                self.base_url + path,
                params=encode_params(params),
                data=data,
                headers=headers,
                timeout=timeout,
                **kwargs,
            )
        except BaseException:
            self._observe(method, "<error>", started)
            raise
        self._observe(method, str(resp.status), started)
        trace(log, "%s %s -> %s", method, path, resp.status)
        return resp

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> JsonDict:
        """One call; the decoded JSON answer (an empty dict for an empty body). Non-2xx → `ApiError`.

        A 429 (API Priority and Fairness) is retried a few times after its Retry-After, like client-go;
        everything else is left to the caller, whose retry policy knows more.
        """
        client_timeout = aiohttp.ClientTimeout(total=timeout if timeout is not None else self.timeout)
        # A plain loop rather than tenacity: this runs for every request, and tenacity's per-call state
        # machine cost a quarter of the request path's CPU.
        attempt = 0
        while True:
            try:
                return await self._request_once(method, path, params, body, content_type, client_timeout)
            except ApiError as exc:
                attempt += 1
                if not exc.is_too_many_requests or attempt > self.max_429_retries:
                    raise
                await asyncio.sleep(_retry_after_wait(exc))

    async def _request_once(
        self,
        method: str,
        path: str,
        params: Params | None,
        body: Any,
        content_type: str | None,
        timeout: aiohttp.ClientTimeout,
        may_reauth: bool = True,
    ) -> JsonDict:
        resp = await self._open(method, path, params, body, content_type, timeout)
        async with resp:
            if 200 <= resp.status < 300:
                raw = await resp.read()
                if not raw:
                    return {}
                decoded = jsoncodec.loads(raw)
                return decoded if isinstance(decoded, dict) else {"items": decoded}
            err = await error_from_response(resp, method, path)
        if err.is_unauthorized and may_reauth and (self.auth.rejected() or self._reload_client_cert()):
            # A rotated token file or client certificate: the one read now is the only other credential
            # we could send.
            return await self._request_once(method, path, params, body, content_type, timeout, False)
        raise err

    def _reload_client_cert(self) -> bool:
        if self.client_cert is None or not self.client_cert.refresh(force=True):
            return False
        self._renew_request_pool()
        return True

    def _renew_request_pool(self) -> None:
        """New requests go out on new connections (with the new certificate); the old pool is closed
        once the requests in flight on it have had their time. Watches reconnect on their own."""
        old, self._session = self._session, self._new_session(REQUEST_CONNECTIONS, self._tls)
        self._retired.append(old)

        async def close_later() -> None:
            await asyncio.sleep(self.timeout + 1.0)
            await old.close()
            self._retired.remove(old)

        task = asyncio.get_running_loop().create_task(close_later(), name="kube-retire-pool")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    # -- verbs ---------------------------------------------------------------------------------------

    async def get(self, path: str, params: Params | None = None, *, timeout: float | None = None) -> JsonDict:
        return await self.request("GET", path, params=params, timeout=timeout)

    async def list(
        self, path: str, params: Params | None = None, *, timeout: float | None = None
    ) -> JsonDict:
        """One page of a collection as a dict (`items`, `metadata.resourceVersion`, `metadata.continue`)."""
        return await self.request("GET", path, params=params, timeout=timeout)

    async def create(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        field_manager: str | None = None,
        params: Params | None = None,
        timeout: float | None = None,
    ) -> JsonDict:
        query = [*encode_params(params), *encode_params({"fieldManager": field_manager})]
        return await self.request("POST", path, params=query, body=body, timeout=timeout)

    async def replace(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        field_manager: str | None = None,
        timeout: float | None = None,
    ) -> JsonDict:
        """PUT; carries `metadata.resourceVersion` from the body, so a stale write is a 409."""
        return await self.request(
            "PUT", path, params={"fieldManager": field_manager}, body=body, timeout=timeout
        )

    async def patch(
        self,
        path: str,
        body: Any,
        patch_type: PatchType = "merge",
        *,
        field_manager: str | None = None,
        force: bool | None = None,
        timeout: float | None = None,
    ) -> JsonDict:
        """PATCH with an explicit content type (CRDs reject strategic merge; `apply` needs field_manager)."""
        if patch_type == "apply" and not field_manager:
            raise ValueError("server-side apply needs a field_manager")
        return await self.request(
            "PATCH",
            path,
            params={"fieldManager": field_manager, "force": force},
            body=body,
            content_type=PATCH_CONTENT_TYPES[patch_type],
            timeout=timeout,
        )

    async def delete(
        self,
        path: str,
        *,
        propagation_policy: str | None = None,
        preconditions: Mapping[str, str] | None = None,
        grace_period_seconds: int | None = None,
        timeout: float | None = None,
    ) -> JsonDict:
        options: JsonDict = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if preconditions:
            options["preconditions"] = dict(preconditions)
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        return await self.request("DELETE", path, body=options, timeout=timeout)

    def watch(
        self,
        path: str,
        params: Params | None = None,
        *,
        idle_timeout: float | None = 80.0,
        connect_timeout: float = 10.0,
    ) -> WatchStream:
        """An async iterator of watch events (`{"type", "object"}` dicts); use it with `async with`."""
        query = [*encode_params(params), ("watch", "true")]

        async def opener(timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
            return await self._open("GET", path, query, None, None, timeout, session=self._watch_session)

        return WatchStream(opener, path, idle_timeout=idle_timeout, connect_timeout=connect_timeout)
