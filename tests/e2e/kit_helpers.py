"""Helpers shared by the controller-kit e2e tests (test_kit_*.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from dbaasctl.kube.cache import Informer
from dbaasctl.kube.resources import CONFIGMAPS
from dbaasctl.kube.rest import KubeClient


@asynccontextmanager
async def kube_client(kubeconfig: Path, **kw: Any) -> AsyncIterator[KubeClient]:
    client = await KubeClient.from_config(kubeconfig, **kw)
    try:
        yield client
    finally:
        await client.close()


async def fresh_configmaps(client: KubeClient, namespace: str) -> dict[str, str]:
    """name -> resourceVersion from a consistent list straight from the API server."""
    page = await client.list(CONFIGMAPS.path(namespace))
    return {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in page["items"]}


def informer_view(informer: Informer) -> dict[str, str]:
    return {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in informer.list()}


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


async def http_get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, await resp.text()


def metric_value(text: str, metric_name: str, /, **labels: str) -> float | None:
    """One sample from Prometheus text exposition."""
    for line in text.splitlines():
        if not line.startswith(metric_name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != metric_name:
            continue
        found = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
        if all(json.loads(found.get(k, "null") or "null") == v for k, v in labels.items()):
            return float(value)
    return None
