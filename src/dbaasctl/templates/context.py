"""What a template may reference, as mappings that know their own path (for precise messages)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dbaasctl.api.database import Database

__all__ = ["CONTEXT_NAMES", "Scope", "TemplateContext", "child_path"]

#: The only top-level names a template sees.
CONTEXT_NAMES: tuple[str, ...] = ("metadata", "params", "result", "endpoint", "operation", "previous")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def child_path(path: str, key: str) -> str:
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


class Scope(dict[str, Any]):
    """A context mapping that knows its own path, so a missing key can be named precisely.

    It is a dict (so filters such as tojson and dictsort work); the immutable sandbox refuses
    every mutating method on it.
    """

    __slots__ = ("_path",)

    def __init__(self, path: str, data: Mapping[str, Any]) -> None:
        super().__init__((k, _wrap(child_path(path, k), v)) for k, v in data.items())
        self._path = path


def _wrap(path: str, value: Any) -> Any:
    if isinstance(value, Mapping):
        return Scope(path, value)
    if isinstance(value, list | tuple):
        return tuple(_wrap(f"{path}[{i}]", v) for i, v in enumerate(value))
    return value


@dataclass(frozen=True, slots=True)
class TemplateContext:
    """Everything a template may reference.

    `metadata` holds name, namespace, uid, labels and annotations of the Database; `params` its
    effective params (class defaults applied); `result` the row set the create or rotate
    procedure returned (empty while rendering procedure inputs); `endpoint` at least `name`;
    `previous` the data of the Secret a rotation supersedes (rotate and retire inputs of a two-phase
    rotation; empty elsewhere, or when that Secret was missing or modified).
    """

    metadata: Mapping[str, Any]
    params: Mapping[str, str]
    result: Mapping[str, str] = field(default_factory=dict)
    endpoint: Mapping[str, str] = field(default_factory=dict)
    #: Procedure inputs only: `name` (create, rotate, delete, retire) and `id`, the intent's idempotency key.
    operation: Mapping[str, str] = field(default_factory=dict)
    previous: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_database(
        cls,
        db: Database,
        *,
        params: Mapping[str, str] | None = None,
        result: Mapping[str, str] | None = None,
        endpoint_name: str | None = None,
    ) -> TemplateContext:
        """The context for one Database; `params` overrides spec.params (use the resolved ones)."""
        meta = db.metadata
        metadata: dict[str, Any] = {
            "name": meta.name,
            "namespace": meta.namespace or "",
            "labels": dict(meta.labels),
            "annotations": dict(meta.annotations),
        }
        if meta.uid:
            metadata["uid"] = meta.uid
        return cls(
            metadata=metadata,
            params=dict(db.spec.params if params is None else params),
            result=dict(result or {}),
            endpoint={"name": endpoint_name if endpoint_name is not None else db.spec.endpoint},
        )

    def for_operation(self, name: str, generation: int) -> TemplateContext:
        """The context a procedure's inputs render in, with `operation.name` and `operation.id`.

        The id names one intent: the Database (its uid), the operation and the credential generation
        the call is to produce (create 1, each rotate one more; delete and retire the current one). A call repeated
        because its answer was lost carries the same id, as the generation only moves once an outcome
        is recorded; the next intent gets another. A procedure can so recognise a repeat and return its
        first result instead of acting twice. No stored state is needed for it: the id is the same even
        when the operator could not record that a call started.
        """
        meta = self.metadata
        owner = str(meta.get("uid") or f"{meta.get('namespace', '')}/{meta.get('name', '')}")
        target = generation if name in ("delete", "retire") else generation + 1
        return replace(self, operation={"name": name, "id": f"{owner}:{name}:{target}"})

    def with_result(self, result: Mapping[str, str]) -> TemplateContext:
        """The same context with a procedure's result, for rendering the Secret."""
        return replace(self, result=dict(result))

    def with_previous(self, previous: Mapping[str, str]) -> TemplateContext:
        """The same context with the superseded Secret's data, for rotate and retire inputs."""
        return replace(self, previous=dict(previous))

    def _variables(self) -> dict[str, Any]:
        return {
            "metadata": Scope("metadata", self.metadata),
            "params": Scope("params", self.params),
            "result": Scope("result", self.result),
            "endpoint": Scope("endpoint", self.endpoint),
            "operation": Scope("operation", self.operation),
            "previous": Scope("previous", self.previous),
        }
