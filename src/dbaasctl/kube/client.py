"""A small raw Kubernetes API client: JSON dicts over one aiohttp session, with client-go's REST metrics.

Why not the generated `kubernetes_asyncio` APIs: their methods reject query parameters they do not know
(`sendInitialEvents`, ...), their models crash on watch bookmarks and legacy Events, they pick the wrong
PATCH content type for custom resources, and a non-preloaded (watch) response is not checked for errors.
We only borrow kubernetes-asyncio's *configuration loading* (kubeconfig, in-cluster, exec plugins, token
file refresh) and speak HTTP ourselves, which also gives every request explicit timeouts and a place to
count it (`rest_client_requests_total{code,method,host}`, `rest_client_request_duration_seconds`).

Watches are `WatchStream`s: decoded event dicts, a per-line idle timeout (a silent stream behind a load
balancer is detected instead of hanging forever), ERROR events and non-2xx answers raised as `ApiError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import os
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote, urlsplit

import aiohttp
from prometheus_client import CollectorRegistry

from dbaasctl.kube.kubeconfig import UnsupportedKubeconfig, load_in_cluster, load_kubeconfig
from dbaasctl.observability import metrics as m
from dbaasctl.observability.logging import redact, register_secret, trace

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]
ParamValue = str | int | float | bool
Params = Mapping[str, ParamValue | None] | Sequence[tuple[str, ParamValue]]
PatchType = Literal["merge", "json", "strategic", "apply"]

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}

IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
#: How long a token read from a file is reused (client-go re-reads bound tokens every minute too).
TOKEN_FILE_TTL = 60.0
DEFAULT_TIMEOUT = 30.0
# Objects are capped at ~1.5 MiB by etcd; a watch line is one object plus an envelope.
READ_BUFSIZE = 2**21


def micro_time(now: _dt.datetime | None = None) -> str:
    """RFC 3339 with exactly 6 fractional digits, as MicroTime fields (Lease, events.k8s.io) require."""
    ts = (now or _dt.datetime.now(_dt.UTC)).astimezone(_dt.UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- resource paths ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceRef:
    """A group/version/resource (plural) and its scope; builds API paths."""

    group: str
    version: str
    plural: str
    namespaced: bool = True
    kind: str = ""

    @classmethod
    def core(cls, plural: str, namespaced: bool = True, kind: str = "") -> ResourceRef:
        return cls("", "v1", plural, namespaced, kind)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """Collection path (name None) or object path; namespace None on a namespaced type = all namespaces."""
        if not self.namespaced and namespace:
            raise ValueError(f"{self.plural} is cluster-scoped; no namespace allowed")
        if name is not None and self.namespaced and not namespace:
            raise ValueError(f"{self.plural} is namespaced; an object path needs a namespace")
        if subresource and name is None:
            raise ValueError("a subresource needs an object name")
        parts = [self.prefix]
        if namespace:
            parts += ["namespaces", quote(namespace, safe="")]
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
        if subresource:
            parts.append(subresource)
        return "/".join(parts)

    def key(self, namespace: str | None, name: str) -> str:
        return f"{namespace}/{name}" if self.namespaced and namespace else name


CONFIGMAPS = ResourceRef.core("configmaps", kind="ConfigMap")
SECRETS = ResourceRef.core("secrets", kind="Secret")
NAMESPACES = ResourceRef.core("namespaces", namespaced=False, kind="Namespace")
CORE_EVENTS = ResourceRef.core("events", kind="Event")
EVENTS = ResourceRef("events.k8s.io", "v1", "events", kind="Event")
LEASES = ResourceRef("coordination.k8s.io", "v1", "leases", kind="Lease")
TOKEN_REVIEWS = ResourceRef("authentication.k8s.io", "v1", "tokenreviews", False, "TokenReview")
SUBJECT_ACCESS_REVIEWS = ResourceRef(
    "authorization.k8s.io", "v1", "subjectaccessreviews", False, "SubjectAccessReview"
)


def object_key(obj: Mapping[str, Any]) -> str:
    """Store/queue key of an object: `namespace/name`, or `name` when cluster-scoped."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if namespace else str(name)


def split_key(key: str) -> tuple[str | None, str]:
    namespace, sep, name = key.partition("/")
    return (namespace, name) if sep else (None, namespace)


# -- errors ------------------------------------------------------------------------------------------


class ApiError(Exception):
    """A non-2xx answer (or an ERROR watch event) from the API server, parsed from its Status."""

    def __init__(
        self,
        status: int,
        reason: str = "",
        message: str = "",
        *,
        method: str = "",
        path: str = "",
        body: JsonDict | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        # Server messages can echo request content; scrub and bound them before they reach a log line.
        self.message = redact(message)[:1024]
        self.method = method
        self.path = path
        self.body = body
        self.retry_after = retry_after
        where = f"{method} {path}: " if method else ""
        super().__init__(f"{where}{status} {reason}: {self.message}".rstrip(": "))

    @classmethod
    def from_status(
        cls, status_obj: Mapping[str, Any], *, http_status: int = 0, method: str = "", path: str = ""
    ) -> ApiError:
        code = status_obj.get("code") or http_status or 500
        return cls(
            int(code),
            str(status_obj.get("reason") or ""),
            str(status_obj.get("message") or ""),
            method=method,
            path=path,
            body=dict(status_obj),
        )

    @property
    def causes(self) -> list[JsonDict]:
        details = (self.body or {}).get("details") or {}
        causes = details.get("causes") or []
        return [c for c in causes if isinstance(c, dict)]

    @property
    def is_not_found(self) -> bool:
        return self.status == 404

    @property
    def is_conflict(self) -> bool:
        return self.status == 409

    @property
    def is_already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def is_gone(self) -> bool:
        """410 Gone / Expired: the resourceVersion left history, relist."""
        return self.status == 410 or self.reason in ("Expired", "Gone")

    @property
    def is_resource_version_too_large(self) -> bool:
        if any(c.get("reason") == "ResourceVersionTooLarge" for c in self.causes):
            return True
        return self.status == 504 and "too large resource version" in self.message.lower()

    @property
    def is_forbidden(self) -> bool:
        return self.status == 403

    @property
    def is_unauthorized(self) -> bool:
        return self.status == 401

    @property
    def is_too_many_requests(self) -> bool:
        return self.status == 429

    @property
    def is_invalid(self) -> bool:
        return self.status == 422

    @property
    def is_server_error(self) -> bool:
        return self.status >= 500


class WatchIdleTimeout(Exception):
    """A watch stream was silent for longer than its idle timeout (no event, no bookmark)."""


# -- metrics -----------------------------------------------------------------------------------------


class _RestMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = m.counter(
            "rest_client_requests_total",
            "Number of HTTP requests, partitioned by status code, method, and host.",
            ("code", "method", "host"),
            registry,
        )
        self.latency = m.histogram(
            "rest_client_request_duration_seconds",
            "Request latency in seconds. Broken down by verb, and host.",
            ("verb", "host"),
            m.REST_CLIENT_BUCKETS,
            registry,
        )


# -- configuration -----------------------------------------------------------------------------------


@dataclass
class ClientConfig:
    """What a session needs; built from kubeconfig or in-cluster files by `load_config`."""

    host: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_ssl: bool = True
    tls_server_name: str | None = None
    # kubernetes-asyncio's Configuration, only for credentials our own loader does not read (exec
    # plugins, auth providers): kept for its auth header and refresh hooks.
    kube_configuration: Any = None
    token: str | None = None
    #: A token file re-read on use at most every TOKEN_FILE_TTL seconds (rotated ServiceAccount tokens).
    token_file: str | None = None
    source: str = ""


def _kubeconfig_path(kubeconfig: str | os.PathLike[str] | None) -> str | None:
    """The kubeconfig to read, or None for in-cluster config (startup only, so blocking is fine)."""
    if kubeconfig is not None:
        return os.fspath(kubeconfig)
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"]
    if os.environ.get("KUBERNETES_SERVICE_HOST") and Path(IN_CLUSTER_TOKEN).is_file():
        return None
    return os.path.expanduser("~/.kube/config")


async def load_config(
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    token: str | None = None,
) -> tuple[ClientConfig, Any]:
    """Resolve config like controller-runtime: explicit path → $KUBECONFIG → in-cluster → ~/.kube/config.

    `token` overrides whatever credentials the config carries (client certs included), e.g. to act as a
    ServiceAccount. Returns the config and the kubeconfig loader (None in-cluster) for token refresh.
    """
    path = _kubeconfig_path(kubeconfig)
    try:
        creds = load_kubeconfig(path, context) if path is not None else load_in_cluster()
    except UnsupportedKubeconfig as exc:
        log.debug("%s: %s; using kubernetes-asyncio's loader", path, exc)
        return await _load_with_kubernetes_asyncio(path, context, token)
    return ClientConfig(
        host=creds.host,
        ca_file=creds.ca_file,
        cert_file=None if token else creds.cert_file,
        key_file=None if token else creds.key_file,
        verify_ssl=creds.verify_ssl,
        tls_server_name=creds.tls_server_name,
        token=token or creds.token,
        token_file=None if token else creds.token_file,
        source=f"kubeconfig {path}" if path is not None else "in-cluster",
    ), None


async def _load_with_kubernetes_asyncio(
    path: str | None, context: str | None, token: str | None
) -> tuple[ClientConfig, Any]:
    # Imported only here: it pulls in every generated API model (~40 MB resident).
    from kubernetes_asyncio import config as kconfig
    from kubernetes_asyncio.client import Configuration

    cfg = Configuration()
    loader: Any = None
    if path is not None:
        loader = await kconfig.load_kube_config(
            config_file=path, context=context, client_configuration=cfg, persist_config=False
        )
        source = f"kubeconfig {path}"
    else:
        kconfig.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        source = "in-cluster"
    client_config = ClientConfig(
        host=str(cfg.host).rstrip("/"),
        ca_file=cfg.ssl_ca_cert,
        cert_file=None if token else cfg.cert_file,
        key_file=None if token else cfg.key_file,
        verify_ssl=bool(cfg.verify_ssl),
        tls_server_name=cfg.tls_server_name,
        kube_configuration=None if token else cfg,
        token=token,
        source=source,
    )
    return client_config, loader


def _ssl_context(config: ClientConfig) -> ssl.SSLContext | bool:
    if not config.host.startswith("https"):
        return False
    ctx = ssl.create_default_context(cafile=config.ca_file)
    if config.cert_file:
        ctx.load_cert_chain(config.cert_file, keyfile=config.key_file)
    if not config.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _encode_params(params: Params | None) -> list[tuple[str, str]]:
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


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


# -- the client --------------------------------------------------------------------------------------


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
        self._metrics = _RestMetrics(self.registry)
        if config.token:
            register_secret(config.token)
        connector = aiohttp.TCPConnector(limit=100, ssl=_ssl_context(config))
        self._session = aiohttp.ClientSession(
            connector=connector, read_bufsize=READ_BUFSIZE, timeout=aiohttp.ClientTimeout(total=None)
        )
        self._server_hostname = config.tls_server_name
        self._token_cache: tuple[str, float] | None = None
        # kubeconfig exec/gcp credentials expire; kubernetes-asyncio refreshes them in a loop that
        # returns at once for every other auth type.
        self._refresh_task: asyncio.Task[None] | None = None
        if loader is not None and config.kube_configuration is not None:
            from kubernetes_asyncio import config as kconfig

            self._refresh_task = asyncio.get_running_loop().create_task(
                kconfig.refresh_token(loader, config.kube_configuration), name="kube-token-refresh"
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
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh_task
            self._refresh_task = None
        if not self._session.closed:
            await self._session.close()

    @property
    def closed(self) -> bool:
        return self._session.closed

    async def _auth_headers(self) -> dict[str, str]:
        if self.config.token:
            return {"Authorization": f"Bearer {self.config.token}"}
        if self.config.token_file:
            return {"Authorization": f"Bearer {self._file_token()}"}
        kc = self.config.kube_configuration
        if kc is None:
            return {}
        value = await kc.get_api_key_with_prefix("BearerToken")
        if value:
            return {"Authorization": str(value)}
        return {}

    def _file_token(self) -> str:
        now = time.monotonic()
        if self._token_cache is None or now - self._token_cache[1] > TOKEN_FILE_TTL:
            assert self.config.token_file is not None
            token = Path(self.config.token_file).read_text(encoding="utf-8").strip()
            register_secret(token)
            self._token_cache = (token, now)
        return self._token_cache[0]

    def _observe(self, method: str, code: str, started: float) -> None:
        self._metrics.requests.labels(code=code, method=method, host=self.host_label).inc()
        self._metrics.latency.labels(verb=method, host=self.host_label).observe(time.monotonic() - started)

    async def _open(
        self,
        method: str,
        path: str,
        params: Params | None,
        body: Any,
        content_type: str | None,
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        headers = {"Accept": "application/json", **await self._auth_headers()}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type or "application/json"
        started = time.monotonic()
        kwargs: dict[str, Any] = {}
        if self._server_hostname:
            kwargs["server_hostname"] = self._server_hostname
        try:
            resp = await self._session.request(
                method,
                self.base_url + path,
                params=_encode_params(params),
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

    @staticmethod
    async def _error_from(resp: aiohttp.ClientResponse, method: str, path: str) -> ApiError:
        text = await resp.text(errors="replace")
        retry_after = _retry_after(resp.headers)
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("kind") == "Status":
            err = ApiError.from_status(parsed, http_status=resp.status, method=method, path=path)
            err.status = resp.status
            err.retry_after = retry_after
            return err
        return ApiError(
            resp.status, resp.reason or "", text[:512], method=method, path=path, retry_after=retry_after
        )

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
        attempt = 0
        while True:
            resp = await self._open(method, path, params, body, content_type, client_timeout)
            async with resp:
                if 200 <= resp.status < 300:
                    raw = await resp.read()
                    if not raw:
                        return {}
                    decoded = json.loads(raw)
                    return decoded if isinstance(decoded, dict) else {"items": decoded}
                err = await self._error_from(resp, method, path)
            if err.is_too_many_requests and attempt < self.max_429_retries:
                attempt += 1
                await asyncio.sleep(min(err.retry_after if err.retry_after is not None else 1.0, 10.0))
                continue
            raise err

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
        query = [*_encode_params(params), *_encode_params({"fieldManager": field_manager})]
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
        query = [*_encode_params(params), ("watch", "true")]
        return WatchStream(self, path, query, idle_timeout=idle_timeout, connect_timeout=connect_timeout)


class WatchStream:
    """One watch request. Ends (StopAsyncIteration) when the server closes the stream normally.

    Raises `ApiError` for a non-2xx answer and for an ERROR event (410 Expired in particular), and
    `WatchIdleTimeout` when nothing, not even a bookmark, arrived for `idle_timeout` seconds.
    """

    def __init__(
        self,
        client: KubeClient,
        path: str,
        params: list[tuple[str, str]],
        *,
        idle_timeout: float | None,
        connect_timeout: float,
    ) -> None:
        self._client = client
        self.path = path
        self._params = params
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
            resp = await self._client._open("GET", self.path, self._params, None, None, timeout)
        if resp.status != 200:
            try:
                raise await self._client._error_from(resp, "GET", self.path)
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
        event = json.loads(line)
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
