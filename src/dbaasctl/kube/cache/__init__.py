"""The informer cache in parts: store + indexers, list/watch source, reflector, informer."""

from dbaasctl.kube.cache.informer import AddHandler, DeleteHandler, Informer, UpdateHandler
from dbaasctl.kube.cache.reflector import Backoff, Reflector, ReflectorHealth
from dbaasctl.kube.cache.source import ListWatch
from dbaasctl.kube.cache.store import (
    LAST_APPLIED,
    NAMESPACE_INDEX,
    DeletedFinalStateUnknown,
    Delta,
    IndexFunc,
    Store,
    Transform,
    relist_deltas,
    slim,
)

__all__ = [
    "LAST_APPLIED",
    "NAMESPACE_INDEX",
    "AddHandler",
    "Backoff",
    "DeleteHandler",
    "DeletedFinalStateUnknown",
    "Delta",
    "IndexFunc",
    "Informer",
    "ListWatch",
    "Reflector",
    "ReflectorHealth",
    "Store",
    "Transform",
    "UpdateHandler",
    "relist_deltas",
    "slim",
]
