"""A web application that reads its database credentials from environment variables, as many do: it
sees new ones only when its pod is replaced. The rotation roll-out test runs it in the operator image
(Python, asyncpg and aiohttp are there) on the test bed's node.

GET /        one query on a new connection with the credentials the pod started with; 200 with the
             user name and pod, or 500 with the exception's class (never a credential)
GET /ready   the readiness probe: the same query, 503 once the pod is shutting down

On SIGTERM the pod keeps serving for DRAIN_SECONDS while it reports not ready, so requests that were
already routed to it (the Service's endpoints lag the pod's termination) still succeed: the graceful
shutdown every production web server does.
"""

from __future__ import annotations

import asyncio
import os
import signal

import asyncpg
from aiohttp import web

POD = os.environ.get("POD_NAME", "?")
USER = os.environ["DB_USER"]
DRAIN_SECONDS = float(os.environ.get("DRAIN_SECONDS", "5"))


async def query() -> None:
    conn = await asyncpg.connect(
        host=os.environ["DB_HOST"],
        port=int(os.environ["DB_PORT"]),
        user=USER,
        password=os.environ["DB_PASSWORD"],
        database=os.environ["DB_NAME"],
        timeout=5,
    )
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


async def serve(request: web.Request) -> web.Response:
    try:
        await query()
    except Exception as exc:
        return web.json_response({"pod": POD, "user": USER, "error": type(exc).__name__}, status=500)
    return web.json_response({"pod": POD, "user": USER})


async def main() -> None:
    stopping = asyncio.Event()

    async def ready(request: web.Request) -> web.Response:
        if stopping.is_set():
            return web.json_response({"pod": POD, "ready": False}, status=503)
        return await serve(request)

    app = web.Application()
    app.router.add_get("/", serve)
    app.router.add_get("/ready", ready)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", int(os.environ.get("PORT", "8080"))).start()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    await asyncio.sleep(DRAIN_SECONDS)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
