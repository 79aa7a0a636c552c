"""What the reconciler keeps between passes in this process (and loses with it)."""

from __future__ import annotations

from dbaasctl.controller.database.model import Held
from dbaasctl.controller.database.observe import Pass

__all__ = ["Memory"]


class Memory:
    """What survives between passes in this process: credentials not yet stored, consecutive failed
    calls (for the backoff), retires seen but not recorded, Databases told about the legacy annotation. Keyed by uid, so a
    Database re-created under the same name starts clean."""

    def __init__(self) -> None:
        self._held: dict[str, Held] = {}
        self._failures: dict[str, int] = {}
        self.legacy_told: set[str] = set()
        #: Databases whose retire this process saw succeed and has not recorded yet (by ident).
        self.retired: set[str] = set()

    @staticmethod
    def ident(p: Pass) -> str:
        return f"{p.key}@{p.db.metadata.uid}"

    def held_for(self, p: Pass) -> Held | None:
        return self._held.get(self.ident(p))

    def hold(self, p: Pass, held: Held) -> None:
        self._held[self.ident(p)] = held

    def release(self, p: Pass) -> None:
        self._held.pop(self.ident(p), None)

    def failed(self, p: Pass) -> int:
        n = self._failures.get(self.ident(p), 0) + 1
        self._failures[self.ident(p)] = n
        return n

    def reset(self, p: Pass) -> None:
        self._failures.pop(self.ident(p), None)

    def forget(self, key: str) -> None:
        for table in (self._held, self._failures):
            for k in [k for k in table if k.startswith(f"{key}@")]:
                del table[k]
        self.retired = {k for k in self.retired if not k.startswith(f"{key}@")}
