"""Roll-out of consumers after a rotation, for workloads that opt in.

An application that reads its credentials from environment variables only sees new ones after a
restart. A Deployment, StatefulSet or DaemonSet annotated `dbaasctl.io/rollout-on-rotation: <names>`
(Database or Secret names in its namespace, comma-separated) gets its pod template annotated with the
credential generation after each rotation, which rolls it exactly like `kubectl rollout restart`. With
a two-phase rotation the previous credentials stay valid during the grace period, so the old pods keep
working while the new ones start.

Off unless the operator runs with `--rollout-workloads` (the chart grants the RBAC only then). The
roll-out follows the record of a rotation; it is never a reason to repeat one: a failure is an Event.
A patch is only sent while the template's generation is behind, so a repeated roll-out is a no-op.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dbaasctl.kube.api import KubeApi
from dbaasctl.kube.errors import describe_failure
from dbaasctl.kube.resources import ResourceRef

__all__ = ["ROLLOUT_ANNOTATION", "WORKLOADS", "Rollout", "opted_in", "roll_out", "template_annotation"]

log = logging.getLogger("dbaasctl.controller.database")

ROLLOUT_ANNOTATION = "dbaasctl.io/rollout-on-rotation"
DEPLOYMENTS = ResourceRef("apps", "v1", "deployments", True, "Deployment")
STATEFULSETS = ResourceRef("apps", "v1", "statefulsets", True, "StatefulSet")
DAEMONSETS = ResourceRef("apps", "v1", "daemonsets", True, "DaemonSet")
WORKLOADS = (DEPLOYMENTS, STATEFULSETS, DAEMONSETS)
_PREFIX = "credential-generation."
_MAX_NAME = 63


@dataclass
class Rollout:
    rolled: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def template_annotation(database: str) -> str:
    """The pod-template annotation for one Database (a workload may consume several)."""
    name = _PREFIX + database
    if len(name) > _MAX_NAME:
        name = _PREFIX + hashlib.sha256(database.encode()).hexdigest()[:16]
    return f"dbaasctl.io/{name}"


def opted_in(workload: Mapping[str, Any], database: str, secret: str) -> bool:
    annotations = (workload.get("metadata") or {}).get("annotations") or {}
    names = {n.strip() for n in str(annotations.get(ROLLOUT_ANNOTATION, "")).split(",")}
    return database in names or secret in names


def _behind(workload: Mapping[str, Any], key: str, generation: int) -> bool:
    template = ((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}
    try:
        return int((template.get("annotations") or {}).get(key, "0")) < generation
    except ValueError:
        return True


async def roll_out(
    client: KubeApi, field_manager: str, namespace: str, database: str, secret: str, generation: int
) -> Rollout:
    """Annotate the pod templates of every opted-in workload that is behind `generation`."""
    out = Rollout()
    key = template_annotation(database)
    patch = {"spec": {"template": {"metadata": {"annotations": {key: str(generation)}}}}}
    for ref in WORKLOADS:
        try:
            page = await client.list(ref.path(namespace))
        except Exception as exc:
            out.failed.append(f"listing {ref.plural}: {describe_failure(exc)}")
            continue
        for item in page.get("items") or []:
            name = item["metadata"]["name"]
            if not opted_in(item, database, secret) or not _behind(item, key, generation):
                continue
            try:
                await client.patch(ref.path(namespace, name), patch, "merge", field_manager=field_manager)
            except Exception as exc:
                out.failed.append(f"{ref.kind}/{name}: {describe_failure(exc)}")
                continue
            out.rolled.append(f"{ref.kind}/{name}")
    return out
