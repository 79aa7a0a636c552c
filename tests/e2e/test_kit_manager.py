"""The manager in-process against the real API server: readiness follows cache sync, secure /metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kit_helpers import configmap, http_get, kube_client, metric_value
from prometheus_client import CollectorRegistry

from dbaasctl.kube.controller import Result
from dbaasctl.kube.manager import Manager
from dbaasctl.kube.manager_settings import ManagerSettings
from dbaasctl.kube.resources import CONFIGMAPS, object_key
from dbaasctl.kube.rest import KubeClient
from testbed.controlplane import KubeTools
from testbed.polling import eventually


def settings(**kw: Any) -> ManagerSettings:
    base: dict[str, Any] = {
        "probe_host": "127.0.0.1",
        "probe_port": 0,
        "metrics_host": "127.0.0.1",
        "metrics_port": None,
        "leader_election": False,
        "handle_signals": False,
        "graceful_shutdown_timeout": 5.0,
    }
    base.update(kw)
    return ManagerSettings(**base)


def role(namespace: str, name: str, rules: list[dict[str, Any]]) -> str:
    return json.dumps(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": rules,
        }
    )


async def test_readyz_turns_ready_only_after_caches_sync(
    control_plane: KubeTools, namespace: str, service_account_kubeconfig: Callable[..., Path]
) -> None:
    # The operator's identity cannot list ConfigMaps yet, so its cache cannot sync.
    sa_config = service_account_kubeconfig(namespace, "kit-operator")
    client = await KubeClient.from_config(sa_config, registry=CollectorRegistry())
    manager = Manager(client, settings())
    informer = manager.add_informer(CONFIGMAPS, namespace=namespace)
    reconciled: list[str] = []

    async def reconcile(key: str) -> Result | None:
        reconciled.append(key)
        return None

    ctl = manager.add_controller("cms", reconcile, workers=2)
    informer.add_handlers(on_add=lambda o: ctl.enqueue(object_key(o)))
    run = asyncio.create_task(manager.run())
    try:
        assert await eventually(lambda: manager.probe_port is not None, timeout=30)
        base = f"http://127.0.0.1:{manager.probe_port}"
        for _ in range(5):
            status, body = await http_get(f"{base}/readyz")
            assert status == 500
            assert "[-]informers-synced failed" in body
            assert (await http_get(f"{base}/healthz"))[0] == 200, "liveness does not depend on the API"
            await asyncio.sleep(0.3)
        assert not reconciled, "no reconcile before sync"
        assert not manager.workers_running, "no workers before sync"
        status, body = await http_get(f"{base}/readyz/informers-synced")
        assert "not synced: configmaps" in body
        await asyncio.to_thread(
            control_plane.kubectl,
            "apply",
            "-f",
            "-",
            input=role(
                namespace,
                "cm-reader",
                [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]}],
            ),
        )
        await asyncio.to_thread(
            control_plane.kubectl,
            "-n",
            namespace,
            "create",
            "rolebinding",
            "cm-reader",
            "--role=cm-reader",
            f"--serviceaccount={namespace}:kit-operator",
        )
        assert await eventually(lambda: informer.has_synced, timeout=90)
        status, _ = await http_get(f"{base}/readyz")
        assert status == 200
        assert await eventually(lambda: f"{namespace}/kube-root-ca.crt" in reconciled, timeout=30)
    finally:
        manager.stop()
        code = await asyncio.wait_for(run, 60)
    assert code == 0
    assert client.closed


async def test_secure_metrics_401_403_200(control_plane: KubeTools, namespace: str) -> None:
    reader = f"kit-metrics-reader-{namespace}"[:63]
    async with kube_client(control_plane.kubeconfig) as setup:
        unauthorised = await asyncio.to_thread(control_plane.service_account_token, namespace, "nosy")
        authorised = await asyncio.to_thread(control_plane.service_account_token, namespace, "prometheus")
        await setup.create(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": reader},
                "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
            },
        )
        await setup.create(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": reader},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": reader},
                "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": namespace}],
            },
        )
        try:
            client = await KubeClient.from_config(control_plane.kubeconfig, registry=CollectorRegistry())
            manager = Manager(client, settings(metrics_port=0, metrics_secure=True))
            manager.add_informer(CONFIGMAPS, namespace=namespace)
            run = asyncio.create_task(manager.run())
            try:
                assert await eventually(lambda: manager.metrics_port is not None, timeout=30)
                url = f"http://127.0.0.1:{manager.metrics_port}/metrics"
                assert (await http_get(url))[0] == 401
                assert (await http_get(url, token="not-a-real-token"))[0] == 401
                assert (await http_get(url, token=unauthorised))[0] == 403
                status, body = await http_get(url, token=authorised)
                assert status == 200
                assert metric_value(body, "rest_client_requests_total", method="POST", code="201") is not None
                # Probes stay unauthenticated on their own port.
                assert (await http_get(f"http://127.0.0.1:{manager.probe_port}/healthz"))[0] == 200
                assert (await http_get(f"http://127.0.0.1:{manager.probe_port}/metrics"))[0] == 404
            finally:
                manager.stop()
                assert await asyncio.wait_for(run, 60) == 0
        finally:
            for kind in ("clusterrolebindings", "clusterroles"):
                await setup.delete(f"/apis/rbac.authorization.k8s.io/v1/{kind}/{reader}")


async def test_manager_with_leader_election_runs_workers_and_releases_on_stop(
    control_plane: KubeTools, namespace: str
) -> None:
    client = await KubeClient.from_config(control_plane.kubeconfig, registry=CollectorRegistry())
    manager = Manager(
        client,
        settings(leader_election=True, lease_namespace=namespace, lease_name="solo", identity="solo-1"),
    )
    informer = manager.add_informer(CONFIGMAPS, namespace=namespace)
    seen: list[str] = []

    async def reconcile(key: str) -> None:
        seen.append(key)

    ctl = manager.add_controller("cms", reconcile)
    informer.add_handlers(on_add=lambda o: ctl.enqueue(object_key(o)))
    recorder = manager.event_recorder("kit.example.com/test")
    run = asyncio.create_task(manager.run())
    async with kube_client(control_plane.kubeconfig) as check:
        try:
            await check.create(CONFIGMAPS.path(namespace), configmap("job"))
            assert await eventually(lambda: f"{namespace}/job" in seen, timeout=60)
            assert manager.is_leader
            obj = informer.get(f"{namespace}/job")
            assert obj is not None
            recorder.normal(obj, "Seen", "reconciled by the kit test")
            lease = await check.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/solo")
            assert lease["spec"]["holderIdentity"] == "solo-1"
            text = (await http_get(f"http://127.0.0.1:{manager.metrics_port}/metrics"))[1]
            assert metric_value(text, "leader_election_master_status", name="solo") == 1.0
            assert metric_value(text, "controller_runtime_max_concurrent_reconciles", controller="cms") == 8.0
        finally:
            manager.stop()
            assert await asyncio.wait_for(run, 60) == 0
        lease = await check.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/solo")
        assert not lease["spec"].get("holderIdentity"), "released on graceful stop"
        assert lease["spec"]["leaseDurationSeconds"] == 1
        events = await check.list(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
        assert [e["reason"] for e in events["items"] if e["regarding"]["name"] == "job"] == ["Seen"]


async def test_lost_lease_cancels_work_at_once_and_exits_non_zero(
    control_plane: KubeTools, namespace: str
) -> None:
    client = await KubeClient.from_config(control_plane.kubeconfig, registry=CollectorRegistry())
    manager = Manager(
        client,
        settings(
            leader_election=True,
            lease_namespace=namespace,
            lease_name="stolen",
            identity="victim",
            lease_duration=6.0,
            renew_deadline=4.0,
            retry_period=1.0,
        ),
    )
    informer = manager.add_informer(CONFIGMAPS, namespace=namespace)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def reconcile(key: str) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)  # a long DB call, say
        except asyncio.CancelledError:
            cancelled.set()
            raise

    ctl = manager.add_controller("cms", reconcile, workers=1)
    informer.add_handlers(on_add=lambda o: ctl.enqueue(object_key(o)))
    run = asyncio.create_task(manager.run())
    async with kube_client(control_plane.kubeconfig) as thief:
        await asyncio.wait_for(started.wait(), 60)
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/stolen"
        lease = await thief.get(path)
        lease["spec"]["holderIdentity"] = "thief"
        await thief.replace(path, lease)
        code = await asyncio.wait_for(run, 30)
    assert code == 1
    assert cancelled.is_set(), "in-flight work was cancelled, not drained"
    assert not manager.workers_running
    assert not manager.is_leader
