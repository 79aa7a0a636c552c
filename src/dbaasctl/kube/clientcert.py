"""A kubeconfig's client certificate, reloaded when its files change.

Certificates issued for a short time (cert-manager, kubeadm's rotation, a CSR-based identity) are
replaced on disk while the operator runs. The TLS context is shared by every connection the client
opens, so loading the new pair into it makes every new connection present it; connections already
open keep the identity they were accepted with. The files are checked at most every
`CERT_CHECK_INTERVAL` seconds (a `stat`, no read) and at once after a 401.

The pair is read once into memory and loaded from one private copy, after a trial load into a scratch
context: a reload can neither mix a new certificate with an old key (files replaced one after the other)
nor leave the live context half-updated; a pair that does not load is skipped and retried later.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path

from dbaasctl.primitives.clock import loop_time

__all__ = ["CERT_CHECK_INTERVAL", "ClientCertificate"]

log = logging.getLogger("dbaasctl.kube.client")

#: Seconds between checks of the certificate files for a change.
CERT_CHECK_INTERVAL = 10.0

_Signature = tuple[tuple[int, int, int], ...]


class ClientCertificate:
    def __init__(
        self,
        context: ssl.SSLContext,
        cert_file: str,
        key_file: str | None,
        *,
        interval: float | None = None,
        clock: Callable[[], float] = loop_time,
    ) -> None:
        self._context = context
        self._files = [Path(cert_file), *([Path(key_file)] if key_file else [])]
        self.interval = CERT_CHECK_INTERVAL if interval is None else interval
        self._clock = clock
        self._signature = self._stat()
        self._checked = clock()
        self.reloads = 0

    def _stat(self) -> _Signature | None:
        try:
            stats = [f.stat() for f in self._files]
        except OSError:
            return None
        return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def refresh(self, *, force: bool = False) -> bool:
        """Load the pair again if its files changed; True when a new certificate is now in use."""
        now = self._clock()
        if not force and now - self._checked < self.interval:
            return False
        self._checked = now
        signature = self._stat()
        if signature is None or signature == self._signature:
            return False
        try:
            self._load([f.read_bytes() for f in self._files])
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning(
                "client certificate %s changed but does not load (%s); keeping the one in use",
                self._files[0],
                type(exc).__name__,
            )
            return False
        self._signature = signature
        self.reloads += 1
        log.info("client certificate %s reloaded", self._files[0])
        return True

    def _load(self, pems: list[bytes]) -> None:
        fd, name = tempfile.mkstemp(prefix="dbaasctl-client-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(b"\n".join(pems))
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(name)  # trial: the pair matches
            self._context.load_cert_chain(name)
        finally:
            os.unlink(name)
