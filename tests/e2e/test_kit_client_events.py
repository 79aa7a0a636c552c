"""Raw client verbs and the Event recorder against the real API server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from kit_helpers import configmap, kube_client
from prometheus_client import CollectorRegistry

from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.events import EventRecorder
from dbaasctl.kube.eventseries import NOTE_LIMIT
from dbaasctl.kube.resources import CONFIGMAPS
from dbaasctl.kube.rest import KubeClient
from dbaasctl.observability.logging import register_secret
from testbed.controlplane import KubeTools


async def test_verbs_patch_types_errors_and_request_metrics(control_plane: KubeTools, namespace: str) -> None:
    registry = CollectorRegistry()
    async with kube_client(control_plane.kubeconfig, registry=registry) as client:
        path = CONFIGMAPS.path(namespace)
        one = CONFIGMAPS.path(namespace, "p")
        created = await client.create(path, configmap("p", a="1"))
        assert created["metadata"]["uid"]
        await client.patch(one, {"data": {"b": "2"}}, "merge")
        await client.patch(one, [{"op": "add", "path": "/data/c", "value": "3"}], "json")
        await client.patch(one, {"data": {"d": "4"}}, "strategic")
        applied = await client.patch(
            one,
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}, "data": {"a": "applied"}},
            "apply",
            field_manager="kit-test",
            force=True,
        )
        assert applied["data"] == {"a": "applied", "b": "2", "c": "3", "d": "4"}
        with pytest.raises(ValueError, match="field_manager"):
            await client.patch(one, {}, "apply")
        stale = dict(created)
        stale["data"] = {"x": "y"}
        with pytest.raises(ApiError) as conflict:
            await client.replace(one, stale)
        assert conflict.value.is_conflict
        with pytest.raises(ApiError) as exists:
            await client.create(path, configmap("p"))
        assert exists.value.is_already_exists
        await client.delete(one)
        with pytest.raises(ApiError) as missing:
            await client.get(one)
        assert missing.value.is_not_found
        assert missing.value.reason == "NotFound"
        host = client.host_label
    assert (
        registry.get_sample_value(
            "rest_client_requests_total", {"code": "404", "method": "GET", "host": host}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "rest_client_requests_total", {"code": "409", "method": "PUT", "host": host}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "rest_client_request_duration_seconds_count", {"verb": "PATCH", "host": host}
        )
        or 0
    ) >= 4


async def test_token_override_acts_as_the_service_account(control_plane: KubeTools, namespace: str) -> None:
    token = await asyncio.to_thread(control_plane.service_account_token, namespace, "nobody")
    # Admin kubeconfig for the server and CA, but the token decides who we are.
    async with kube_client(control_plane.kubeconfig, token=token) as client:
        with pytest.raises(ApiError) as denied:
            await client.list(CONFIGMAPS.path(namespace))
        assert denied.value.is_forbidden
        assert token not in str(denied.value)
        review = await client.create(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
    assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:nobody"


async def test_repeated_events_become_one_series(control_plane: KubeTools, namespace: str) -> None:
    register_secret("pw-in-event-note-123")
    async with kube_client(control_plane.kubeconfig) as client:
        cm = await client.create(CONFIGMAPS.path(namespace), configmap("subject"))
        recorder = EventRecorder(client, "kit.example.com/test", "kit-test-1", registry=CollectorRegistry())
        recorder.start()
        for _ in range(3):
            recorder.warning(
                cm, "CreateFailed", "create failed: password pw-in-event-note-123 rejected", "Create"
            )
            await recorder.flush(10)
        recorder.normal(cm, "Created", "é" * 2000, "Create")
        await recorder.stop(10)
        events = await client.list(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    mine = {e["reason"]: e for e in events["items"] if e["regarding"].get("uid") == cm["metadata"]["uid"]}
    assert set(mine) == {"CreateFailed", "Created"}, "repeats did not create new objects"
    failed = mine["CreateFailed"]
    assert failed["series"]["count"] == 3
    assert failed["type"] == "Warning"
    assert failed["action"] == "Create"
    assert failed["reportingController"] == "kit.example.com/test"
    assert failed["reportingInstance"] == "kit-test-1"
    assert "pw-in-event-note-123" not in json.dumps(failed)
    assert len(mine["Created"]["note"].encode()) <= NOTE_LIMIT


async def test_recorder_falls_back_to_core_events_when_events_api_is_forbidden(
    control_plane: KubeTools, namespace: str, service_account_kubeconfig: Callable[..., Path]
) -> None:
    sa = service_account_kubeconfig(namespace, "legacy-recorder")
    only_core = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "core-events", "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}],
    }
    await asyncio.to_thread(control_plane.kubectl, "apply", "-f", "-", input=json.dumps(only_core))
    await asyncio.to_thread(
        control_plane.kubectl,
        "-n",
        namespace,
        "create",
        "rolebinding",
        "core-events",
        "--role=core-events",
        f"--serviceaccount={namespace}:legacy-recorder",
    )
    async with kube_client(control_plane.kubeconfig) as admin:
        cm = await admin.create(CONFIGMAPS.path(namespace), configmap("legacy"))
        client = await KubeClient.from_config(sa)
        try:
            recorder = EventRecorder(client, "kit.example.com/test", registry=CollectorRegistry())
            recorder.start()
            recorder.warning(cm, "Degraded", "first")
            await recorder.flush(10)
            recorder.warning(cm, "Degraded", "first")
            await recorder.stop(10)
        finally:
            await client.close()
        core = await admin.list(f"/api/v1/namespaces/{namespace}/events")
    mine = [e for e in core["items"] if e["involvedObject"].get("uid") == cm["metadata"]["uid"]]
    assert len(mine) == 1
    assert mine[0]["reason"] == "Degraded"
    assert mine[0]["message"] == "first"
    assert mine[0]["count"] == 2
