"""Which API resource a call is about: group/version/plural and scope, their REST paths and object keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

JsonDict = dict[str, Any]


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
