"""The operator's job written with kopf, the framework a Python team would pick instead.

`python -m bench.peers.kopf_operator SPEC.json` (the raw baseline's spec) runs kopf with its defaults
(progress and diff-base in annotations, one worker per object, no Events: kopf posts log lines as Events
only when `settings.posting.loggers` is on, and the raw baseline posts none either) and the same
behaviour as the raw baseline: the finalizer `dbaasctl.io/finalizer` (kopf adds and removes it), the
same procedure calls through an asyncpg pool of `concurrency` connections, the same Secret and the same
status fields, rotation on the `dbaasctl.io/rotate=true` annotation. The Secret is written with the
bench's thin client (kopf has none for other objects), which flatters kopf's CPU and memory.

kopf exports no request counter, so every aiohttp session in this process (kopf's and ours) gets a trace
hook counting requests as `rest_client_requests_total{method,code}` and Event writes as
`dbaasctl_events_total{result}`: the names the operator exports, so one scraper reads all subjects.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import kopf
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest

from bench.api import SECRETS, Api, ApiError
from bench.raw import FINALIZER, ROTATE, RawSpec, _now, _procedure_sql, secret_data, subject_main

RESOURCE = ("dbaasctl.io", "v1", "databases")


def count_requests(registry: CollectorRegistry) -> None:
    """Count every request any aiohttp session of this process sends (kopf builds its own sessions)."""
    requests = Counter(
        "rest_client_requests", "HTTP requests by code and method.", ("code", "method"), registry=registry
    )
    events = Counter(
        "dbaasctl_events",
        "Event writes (created = POST, aggregated = PATCH).",
        ("result",),
        registry=registry,
    )

    async def on_end(_s: Any, _c: Any, params: aiohttp.TraceRequestEndParams) -> None:
        requests.labels(code=str(params.response.status), method=params.method).inc()
        path = params.url.path
        if params.method in ("POST", "PATCH") and (path.endswith("/events") or "/events/" in path):
            events.labels(result="created" if params.method == "POST" else "aggregated").inc()

    async def on_error(_s: Any, _c: Any, params: aiohttp.TraceRequestExceptionParams) -> None:
        requests.labels(code="<error>", method=params.method).inc()

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    trace.on_request_exception.append(on_error)
    original = aiohttp.ClientSession.__init__

    def init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        kwargs["trace_configs"] = [*(kwargs.get("trace_configs") or []), trace]
        original(self, *args, **kwargs)

    aiohttp.ClientSession.__init__ = init  # type: ignore[method-assign]


def handlers(spec: RawSpec, registry: kopf.OperatorRegistry, state: dict[str, Any]) -> None:
    sql = {
        op: _procedure_sql(getattr(spec, op), rows=op != "delete") for op in ("create", "rotate", "delete")
    }
    secrets = SECRETS.format(ns=spec.namespace)

    async def call(op: str, namespace: str, name: str) -> dict[str, str]:
        rows = await state["pool"].fetch(sql[op], namespace, name)
        if op == "delete":
            return {}
        return {str(r["key"]): "" if r["value"] is None else str(r["value"]) for r in rows}

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        state["pool"] = await asyncpg.create_pool(
            spec.dsn, min_size=spec.concurrency, max_size=spec.concurrency
        )
        state["api"] = await Api(spec.server, spec.token, spec.ca_file).__aenter__()

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        await state["pool"].close()
        await state["api"].__aexit__(None, None, None)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(
            server=spec.server, ca_path=spec.ca_file, scheme="Bearer", token=spec.token
        )

    @kopf.on.create(*RESOURCE, registry=registry)
    async def create(name: str, namespace: str, meta: kopf.Meta, patch: kopf.Patch, **_: Any) -> None:
        data = secret_data(await call("create", namespace, name))
        owner = {"apiVersion": "dbaasctl.io/v1", "kind": "Database", "name": name, "uid": meta.uid,
                 "controller": True, "blockOwnerDeletion": True}  # fmt: skip
        labels = {"app.kubernetes.io/managed-by": "dbaasctl", "dbaasctl.io/database": name}
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
                  "metadata": {"name": f"{name}-credentials", "labels": labels, "ownerReferences": [owner]}}  # fmt: skip
        try:
            await state["api"].post(secrets, secret)
        except ApiError as exc:
            if exc.status != 409:
                raise
            await state["api"].merge_patch(f"{secrets}/{name}-credentials", {"data": data})
        now, gen = _now(), meta.get("generation", 1)
        ready = {"type": "Ready", "status": "True", "reason": "Provisioned", "lastTransitionTime": now,
                 "message": f"credentials in Secret {name}-credentials", "observedGeneration": gen}  # fmt: skip
        patch.status.update(conditions=[ready], observedGeneration=gen, secretName=f"{name}-credentials",
                            endpoint=spec.endpoint, provisionedAt=now, credentialGeneration=1)  # fmt: skip

    @kopf.on.update(*RESOURCE, annotations={ROTATE: "true"}, registry=registry)
    async def rotate(name: str, namespace: str, status: kopf.Status, patch: kopf.Patch, **_: Any) -> None:
        secret_name = status.get("secretName") or f"{name}-credentials"
        data = secret_data(await call("rotate", namespace, name))
        await state["api"].merge_patch(f"{secrets}/{secret_name}", {"data": data})
        conditions = [{**c, "reason": "Rotated", "message": f"credentials rotated; Secret {secret_name} updated"}
                      if c.get("type") == "Ready" else c for c in status.get("conditions") or []]  # fmt: skip
        patch.status.update(conditions=conditions, lastRotationTime=_now(),
                            credentialGeneration=int(status.get("credentialGeneration") or 0) + 1)  # fmt: skip
        patch.metadata.annotations[ROTATE] = None

    @kopf.on.delete(*RESOURCE, registry=registry)
    async def delete(name: str, namespace: str, status: kopf.Status, **_: Any) -> None:
        await call("delete", namespace, name)
        await state["api"].delete(f"{secrets}/{status.get('secretName') or f'{name}-credentials'}")


async def run(spec: RawSpec, stop: asyncio.Event) -> None:
    metrics = CollectorRegistry()
    count_requests(metrics)
    ready = asyncio.Event()

    async def serve_metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics), content_type="text/plain")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(status=200 if ready.is_set() else 503)

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", spec.metrics_port).start()
    registry = kopf.OperatorRegistry()
    handlers(spec, registry, {})
    try:
        await kopf.operator(
            registry=registry, namespaces=[spec.namespace], standalone=True, stop_flag=stop, ready_flag=ready
        )
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    return subject_main("python -m bench.peers.kopf_operator", __doc__, argv, run)


if __name__ == "__main__":
    raise SystemExit(main())
