"""The raw baseline: the least any correct operator must do, with nothing else in the way.

`python -m bench.raw SPEC.json` watches the Databases of one namespace and, at a fixed concurrency,
performs exactly the procedure calls and the API writes the job needs:

- create: add the finalizer (before the DBMS call, so nothing is orphaned), call create, create the
  Secret, write the status;
- rotate (annotation `dbaasctl.io/rotate=true`): call rotate, patch the Secret, write the status, drop
  the annotation;
- delete: call delete, delete the Secret, drop the finalizer.

No informer cache, no work queue, no rate limits, no Events, no templates, no re-reads: one watch stream
to learn what exists, an asyncpg pool, one aiohttp session. Its throughput is what this machine's API
server and PostgreSQL allow; the operator's is reported as a fraction of it. It exports
`rest_client_requests_total{method,code}` like the operator, so both are counted by the same scraper.

Per object it keeps only the resourceVersion of its own last write, so a watch event older than that
write (the echo of our finalizer patch arriving after the status patch) cannot trigger a second create.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import re
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest

from bench.api import DATABASES, SECRETS, Api, ApiError, Gone, JsonDict

log = logging.getLogger("bench.raw")

FINALIZER = "dbaasctl.io/finalizer"
ROTATE = "dbaasctl.io/rotate"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


@dataclass(frozen=True)
class RawSpec:
    """Written by the benchmark driver into a 0600 file (it carries the API token and the DSN)."""

    server: str
    token: str
    ca_file: str
    namespace: str
    dsn: str
    concurrency: int
    create: str
    rotate: str
    delete: str
    endpoint: str
    metrics_port: int

    @classmethod
    def load(cls, path: Path) -> RawSpec:
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def dump(self, path: Path) -> None:
        path.touch(mode=0o600)
        path.write_text(json.dumps(self.__dict__), encoding="utf-8")


def _procedure_sql(name: str, *, rows: bool) -> str:
    """The call text: a validated, quoted procedure name and two bound parameters."""
    if not _IDENT.match(name):
        raise ValueError(f"not a procedure name: {name!r}")
    target = ".".join('"' + part.lower() + '"' for part in name.split("."))
    what = "key, value FROM" if rows else ""
    return f"SELECT {what} {target}(k8snamespace => $1, k8sname => $2)"


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def secret_data(result: dict[str, str]) -> dict[str, str]:
    """The Secret's `data`: the procedure's keys plus a `uri`, base64-encoded."""
    data = dict(result)
    data["uri"] = (
        f"postgresql://{quote(result.get('username', ''), safe='')}:{quote(result.get('password', ''), safe='')}"
        f"@{result.get('host', '')}:{result.get('port', '')}/{result.get('database', '')}"
    )
    return {k: _b64(v) for k, v in data.items()}


class Raw:
    def __init__(self, spec: RawSpec) -> None:
        self.spec = spec
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rest_client_requests", "Number of HTTP requests by status code and method.", ("code", "method"),
            registry=self.registry,
        )  # fmt: skip
        self.sql = {
            "create": _procedure_sql(spec.create, rows=True),
            "rotate": _procedure_sql(spec.rotate, rows=True),
            "delete": _procedure_sql(spec.delete, rows=False),
        }
        self.db_path = DATABASES.format(ns=spec.namespace)
        self.secret_path = SECRETS.format(ns=spec.namespace)
        self.slots = asyncio.Semaphore(spec.concurrency)
        self.latest: dict[str, JsonDict | None] = {}
        self.floor: dict[str, int] = {}  # name → resourceVersion of our last write
        self.running: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.ready = False
        self.api: Api
        self.pool: Any = None

    # -- wiring --------------------------------------------------------------------------------------

    def _count(self, method: str, code: int) -> None:
        self.requests.labels(code=str(code), method=method).inc()

    async def serve_metrics(self) -> web.AppRunner:
        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.registry), content_type="text/plain")

        async def readyz(_: web.Request) -> web.Response:
            return web.Response(status=200 if self.ready else 503, text="ok" if self.ready else "starting")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/readyz", readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.spec.metrics_port).start()
        return runner

    async def run(self, stop: asyncio.Event) -> None:
        runner = await self.serve_metrics()
        # Warm: connection set-up (SCRAM) is not work a Database needs, so the limit excludes it.
        self.pool = await asyncpg.create_pool(
            self.spec.dsn, min_size=self.spec.concurrency, max_size=self.spec.concurrency, command_timeout=120
        )
        try:
            async with Api(
                self.spec.server, self.spec.token, self.spec.ca_file, on_request=self._count
            ) as api:
                self.api = api
                watch = asyncio.create_task(self._watch())
                await stop.wait()
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
                for task in list(self.tasks):
                    task.cancel()
                await asyncio.gather(*self.tasks, return_exceptions=True)
        finally:
            await self.pool.close()
            await runner.cleanup()

    async def _watch(self) -> None:
        rv = ""
        while True:
            try:
                if not rv:
                    listing = await self.api.get(self.db_path)
                    rv = listing["metadata"]["resourceVersion"]
                    for item in listing.get("items") or []:
                        self._see(item["metadata"]["name"], item)
                    self.ready = True
                async for event in self.api.watch(self.db_path, rv):
                    obj = event["object"]
                    rv = obj["metadata"].get("resourceVersion") or rv
                    if event["type"] == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    self._see(name, None if event["type"] == "DELETED" else obj)
            except Gone:
                rv = ""
            except (TimeoutError, ApiError, aiohttp.ClientError, OSError) as exc:
                # A busy API server may refuse or drop a request (429, 5xx, reset): list or watch again.
                log.warning("list/watch failed (%s); retrying", exc)
                await asyncio.sleep(0.5)

    # -- dispatch ------------------------------------------------------------------------------------

    @staticmethod
    def _rv(obj: JsonDict | None) -> int:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)

    def _see(self, name: str, obj: JsonDict | None) -> None:
        if obj is not None and self._rv(obj) <= self.floor.get(name, 0):
            return  # the echo of a write we already built on
        self.latest[name] = obj
        if obj is None:
            self.floor.pop(name, None)
        if name not in self.running and self._action(obj) is not None:
            self.running.add(name)
            task = asyncio.create_task(self._work(name))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _action(self, obj: JsonDict | None) -> str | None:
        if obj is None:
            return None
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return "delete" if FINALIZER in (meta.get("finalizers") or []) else None
        if not (obj.get("status") or {}).get("provisionedAt"):
            return "create"
        if (meta.get("annotations") or {}).get(ROTATE) == "true":
            return "rotate"
        return None

    async def _work(self, name: str) -> None:
        try:
            async with self.slots:
                while (action := self._action(self.latest.get(name))) is not None:
                    obj = self.latest[name]
                    assert obj is not None
                    try:
                        fresh = await getattr(self, f"_{action}")(obj)
                    except Exception:
                        log.exception("%s %s failed; retrying", action, name)
                        await asyncio.sleep(1.0)
                        continue
                    if fresh is not None:
                        self.floor[name] = max(self.floor.get(name, 0), self._rv(fresh))
                        if self._rv(self.latest.get(name)) <= self._rv(fresh):
                            self.latest[name] = fresh
        finally:
            self.running.discard(name)

    # -- the three flows -----------------------------------------------------------------------------

    async def _call(self, op: str, namespace: str, name: str) -> dict[str, str]:
        rows = await self.pool.fetch(self.sql[op], namespace, name)
        return (
            {str(r["key"]): "" if r["value"] is None else str(r["value"]) for r in rows}
            if op != "delete"
            else {}
        )

    def _secret_data(self, result: dict[str, str]) -> dict[str, str]:
        return secret_data(result)

    async def _create(self, obj: JsonDict) -> JsonDict | None:
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]
        if FINALIZER not in (meta.get("finalizers") or []):
            obj = await self.api.merge_patch(  # type: ignore[assignment]
                f"{self.db_path}/{name}",
                {"metadata": {"finalizers": [*(meta.get("finalizers") or []), FINALIZER]}},
            )
        result = await self._call("create", ns, name)
        secret_name = f"{name}-credentials"
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": secret_name,
                "labels": {"app.kubernetes.io/managed-by": "dbaasctl", "dbaasctl.io/database": name},
                "ownerReferences": [
                    {
                        "apiVersion": "dbaasctl.io/v1",
                        "kind": "Database",
                        "name": name,
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "data": self._secret_data(result),
        }
        try:
            await self.api.post(self.secret_path, secret)
        except ApiError as exc:
            if exc.status != 409:
                raise
            await self.api.merge_patch(f"{self.secret_path}/{secret_name}", {"data": secret["data"]})
        now = _now()
        status = {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Provisioned",
                    "message": f"credentials in Secret {secret_name}",
                    "lastTransitionTime": now,
                    "observedGeneration": meta.get("generation", 1),
                }
            ],
            "observedGeneration": meta.get("generation", 1),
            "secretName": secret_name,
            "endpoint": self.spec.endpoint,
            "provisionedAt": now,
            "credentialGeneration": 1,
        }
        return await self.api.merge_patch(f"{self.db_path}/{name}/status", {"status": status})

    async def _rotate(self, obj: JsonDict) -> JsonDict | None:
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]
        result = await self._call("rotate", ns, name)
        status = obj.get("status") or {}
        secret_name = status.get("secretName") or f"{name}-credentials"
        await self.api.merge_patch(f"{self.secret_path}/{secret_name}", {"data": self._secret_data(result)})
        now = _now()
        conditions = [
            {**c, "reason": "Rotated", "message": f"credentials rotated; Secret {secret_name} updated"}
            if c.get("type") == "Ready"
            else c
            for c in status.get("conditions") or []
        ]
        patch = {
            "status": {
                "conditions": conditions,
                "lastRotationTime": now,
                "credentialGeneration": int(status.get("credentialGeneration") or 0) + 1,
            }
        }
        await self.api.merge_patch(f"{self.db_path}/{name}/status", patch)
        return await self.api.merge_patch(
            f"{self.db_path}/{name}", {"metadata": {"annotations": {ROTATE: None}}}
        )

    async def _delete(self, obj: JsonDict) -> JsonDict | None:
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]
        await self._call("delete", ns, name)
        secret_name = (obj.get("status") or {}).get("secretName") or f"{name}-credentials"
        await self.api.delete(f"{self.secret_path}/{secret_name}")
        rest = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        return await self.api.merge_patch(
            f"{self.db_path}/{name}", {"metadata": {"finalizers": rest or None}}, ok_missing=True
        )


def subject_main(
    prog: str,
    doc: str | None,
    argv: list[str] | None,
    run: Callable[[RawSpec, asyncio.Event], Awaitable[None]],
) -> int:
    """The command line every bench subject process shares: a spec file in, run until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog=prog, description=doc)
    parser.add_argument("spec", type=Path, help="JSON spec written by the benchmark driver")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    spec = RawSpec.load(args.spec)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(spec, stop)

    asyncio.run(go())
    return 0


def main(argv: list[str] | None = None) -> int:
    return subject_main("python -m bench.raw", __doc__, argv, lambda spec, stop: Raw(spec).run(stop))


if __name__ == "__main__":
    raise SystemExit(main())
