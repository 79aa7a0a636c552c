"""Using the credentials a Database's Secret (or a sample procedure) hands out, as an application would.

The proof that provisioning worked is a login with exactly the keys the Secret carries (`host`, `port`,
`username`, `password`, `database`), never a look at the catalog alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import asyncpg


async def pg_login(creds: Mapping[str, str]) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=creds["host"],
        port=int(creds["port"]),
        user=creds["username"],
        password=creds["password"],
        database=creds["database"],
        timeout=10,
    )


def pg_can_login(
    creds: Mapping[str, str], use: Callable[[asyncpg.Connection], Awaitable[object]] | None = None
) -> bool:
    """Log in (and run `use` on the connection); False only when the server refuses the password.

    Any other failure (no such database, no privilege) propagates: it is not a rotated-away password.
    """

    async def attempt() -> None:
        conn = await pg_login(creds)
        try:
            if use is not None:
                await use(conn)
        finally:
            await conn.close()

    try:
        asyncio.run(attempt())
    except asyncpg.InvalidPasswordError:
        return False
    return True
