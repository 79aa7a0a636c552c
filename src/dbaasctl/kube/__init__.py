"""Generic controller kit: API client, informers, work queue, workers, leader election, Events, manager.

Knows nothing about databases; imports nothing of dbaasctl but `dbaasctl.observability` and
`dbaasctl.primitives`.
"""

from dbaasctl.kube.api import KubeApi
from dbaasctl.kube.cache import DeletedFinalStateUnknown, Informer
from dbaasctl.kube.controller import Controller, ReportedError, Result, TerminalError
from dbaasctl.kube.errors import ApiError, WatchIdleTimeout
from dbaasctl.kube.events import EventRecorder
from dbaasctl.kube.eventseries import ObjectRef
from dbaasctl.kube.leader import LeaderElectionConfig, LeaderElector
from dbaasctl.kube.manager import Manager
from dbaasctl.kube.manager_settings import ManagerSettings
from dbaasctl.kube.resources import (
    CONFIGMAPS,
    CORE_EVENTS,
    EVENTS,
    LEASES,
    NAMESPACES,
    SECRETS,
    ResourceRef,
    object_key,
    split_key,
)
from dbaasctl.kube.rest import KubeClient
from dbaasctl.kube.workqueue import ShutDownError, WorkQueue

__all__ = [
    "CONFIGMAPS",
    "CORE_EVENTS",
    "EVENTS",
    "LEASES",
    "NAMESPACES",
    "SECRETS",
    "ApiError",
    "Controller",
    "DeletedFinalStateUnknown",
    "EventRecorder",
    "Informer",
    "KubeApi",
    "KubeClient",
    "LeaderElectionConfig",
    "LeaderElector",
    "Manager",
    "ManagerSettings",
    "ObjectRef",
    "ReportedError",
    "ResourceRef",
    "Result",
    "ShutDownError",
    "TerminalError",
    "WatchIdleTimeout",
    "WorkQueue",
    "object_key",
    "split_key",
]
