"""The Authorization header for each request, and keeping it fresh.

- A static token (kubeconfig `token`, or `--token`) is sent as is.
- A token file (in-cluster ServiceAccount, kubeconfig `tokenFile`) is re-read at most every minute, as
  client-go does for bound tokens the kubelet rotates, and at once after a 401: the token may have
  been rotated since it was read.
- Credentials only kubernetes-asyncio's loader understands (exec plugins, auth providers) come from its
  Configuration, whose refresh task runs for the client's lifetime.
Client certificates live in the TLS context and are reloaded when their files change (`clientcert`).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from dbaasctl.kube.config import ClientConfig
from dbaasctl.observability.logging import register_secret
from dbaasctl.primitives.clock import loop_time

#: How long a token read from a file is reused (client-go re-reads bound tokens every minute too).
TOKEN_FILE_TTL = 60.0


class Authenticator:
    """Create inside the running loop (it may start a refresh task); `close()` it with the client."""

    def __init__(self, config: ClientConfig, loader: Any = None) -> None:
        self.config = config
        if config.token:
            register_secret(config.token)
        self._token_cache: tuple[str, float] | None = None
        # kubeconfig exec/gcp credentials expire; kubernetes-asyncio refreshes them in a loop that
        # returns at once for every other auth type.
        self._refresh_task: asyncio.Task[None] | None = None
        if loader is not None and config.kube_configuration is not None:
            from kubernetes_asyncio import config as kconfig

            self._refresh_task = asyncio.get_running_loop().create_task(
                kconfig.refresh_token(loader, config.kube_configuration), name="kube-token-refresh"
            )

    async def headers(self) -> dict[str, str]:
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

    def rejected(self) -> bool:
        """The server answered 401: drop what may be stale. True if a new attempt can send other
        credentials (a token file that may have been rotated), False if it would send the same."""
        if self.config.token_file and not self.config.token and self._token_cache is not None:
            self._token_cache = None
            return True
        return False

    def _file_token(self) -> str:
        now = loop_time()
        if self._token_cache is None or now - self._token_cache[1] > TOKEN_FILE_TTL:
            assert self.config.token_file is not None
            token = Path(self.config.token_file).read_text(encoding="utf-8").strip()
            register_secret(token)
            self._token_cache = (token, now)
        return self._token_cache[0]

    async def close(self) -> None:
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh_task
            self._refresh_task = None
