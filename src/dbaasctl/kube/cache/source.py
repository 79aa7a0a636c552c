"""What a reflector lists and watches: one resource type in one namespace (or all), narrowed by selectors.

Lists are paged and consistent (resourceVersion unset): stale state is dangerous for an operator that
drops databases, and object counts are small. The **collection** resourceVersion of the list is where
a watch must start; an item's would replay history or miss it.
"""

from __future__ import annotations

from collections.abc import Callable

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from dbaasctl.kube.api import KubeApi, ParamValue, WatchEvents
from dbaasctl.kube.cache.store import Transform
from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.resources import JsonDict, ResourceRef, object_key

#: A list whose continue token expired restarts from the first page this many times, then fails.
LIST_ATTEMPTS = 4


class _ContinueExpired(Exception):
    def __init__(self, cause: ApiError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class ListWatch:
    def __init__(
        self,
        api: KubeApi,
        resource: ResourceRef,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
        list_timeout: float = 60.0,
    ) -> None:
        if namespace and not resource.namespaced:
            raise ValueError(f"{resource.plural} is cluster-scoped")
        self.api = api
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.page_size = page_size
        self.list_timeout = list_timeout
        self.path = resource.path(namespace)

    def _selectors(self) -> dict[str, ParamValue | None]:
        return {"labelSelector": self.label_selector, "fieldSelector": self.field_selector}

    async def list_all(
        self, transform: Transform, on_page: Callable[[], None] = lambda: None
    ) -> tuple[dict[str, JsonDict], str]:
        """Every object (transformed, by key) and the collection resourceVersion.

        A 410 on a continue token (the snapshot expired between pages) restarts the list from the
        first page; other errors propagate to the reflector, whose backoff knows more.
        """
        retrying = AsyncRetrying(
            stop=stop_after_attempt(LIST_ATTEMPTS),
            retry=retry_if_exception(lambda exc: isinstance(exc, _ContinueExpired)),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._list_pages(transform, on_page)
        except _ContinueExpired as exc:
            raise exc.cause from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _list_pages(
        self, transform: Transform, on_page: Callable[[], None]
    ) -> tuple[dict[str, JsonDict], str]:
        items: dict[str, JsonDict] = {}
        token: str | None = None
        while True:
            params = {**self._selectors(), "limit": self.page_size, "continue": token}
            try:
                page = await self.api.list(self.path, params, timeout=self.list_timeout)
            except ApiError as exc:
                if exc.is_gone and token is not None:
                    raise _ContinueExpired(exc) from exc
                raise
            on_page()
            kind = str(page.get("kind") or "").removesuffix("List") or self.resource.kind
            api_version = page.get("apiVersion") or self.resource.api_version
            for item in page.get("items") or []:
                # List items of built-in types carry no kind/apiVersion; watch events do. Make them alike.
                item.setdefault("apiVersion", api_version)
                if kind:
                    item.setdefault("kind", kind)
                obj = transform(item)
                items[object_key(obj)] = obj
            meta = page.get("metadata") or {}
            token = meta.get("continue") or None
            if token is None:
                return items, str(meta.get("resourceVersion") or "")

    def watch(self, resource_version: str, *, timeout_seconds: int, idle_timeout: float) -> WatchEvents:
        params = {
            **self._selectors(),
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout_seconds,
        }
        return self.api.watch(self.path, params, idle_timeout=idle_timeout)
