"""The test bed is real: each check here fails against a fake or partial control plane."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from testbed.controlplane import ControlPlane, KubeTools, pinned_version
from testbed.polling import poll

DATA = Path(__file__).parent / "data"


def test_server_reports_pinned_version(control_plane: KubeTools) -> None:
    if not isinstance(control_plane, ControlPlane):
        pytest.skip("pinned version applies to the local control plane")
    pinned = pinned_version()
    assert control_plane.version()["gitVersion"] == pinned
    out = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == pinned
    assert out["clientVersion"]["gitVersion"] == pinned, "kubectl must be the one built with the server"


def test_custom_resource_roundtrip_and_schema_validation(control_plane: KubeTools, namespace: str) -> None:
    control_plane.kubectl("apply", "-f", str(DATA / "widgets-crd.yaml"))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.testbed.example.com", "--timeout=60s"
    )
    widget = "apiVersion: testbed.example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n"
    control_plane.kubectl("-n", namespace, "apply", "-f", "-", input=widget)
    got = control_plane.kubectl_json("-n", namespace, "get", "widget", "w1")
    assert got["spec"]["size"] == 3
    bad = widget.replace("size: 3", "size: 0")
    rejected = control_plane.kubectl("-n", namespace, "apply", "-f", "-", input=bad, check=False)
    assert rejected.returncode != 0
    assert "should be greater than or equal to 1" in rejected.stderr


def test_garbage_collector_deletes_owned_objects(control_plane: KubeTools, namespace: str) -> None:
    control_plane.kubectl("-n", namespace, "create", "configmap", "owner")
    uid = control_plane.kubectl_json("-n", namespace, "get", "configmap", "owner")["metadata"]["uid"]
    owned = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owned",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}],
        },
    }
    control_plane.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(owned))
    control_plane.kubectl("-n", namespace, "delete", "configmap", "owner")

    def gone() -> bool:
        res = control_plane.kubectl("-n", namespace, "get", "configmap", "owned", check=False)
        return res.returncode != 0 and "NotFound" in res.stderr

    assert poll(gone, timeout=90), "owned ConfigMap was not garbage-collected"


def test_service_account_token_is_subject_to_rbac(control_plane: KubeTools, namespace: str) -> None:
    sa_config = control_plane.service_account_kubeconfig(namespace, "reader")
    as_sa = ["kubectl", f"--kubeconfig={sa_config}", "-n", namespace]
    who = subprocess.run([*as_sa, "auth", "whoami", "-o", "json"], capture_output=True, text=True, check=True)
    assert (
        json.loads(who.stdout)["status"]["userInfo"]["username"]
        == f"system:serviceaccount:{namespace}:reader"
    )
    denied = subprocess.run([*as_sa, "get", "configmaps"], capture_output=True, text=True)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    control_plane.kubectl(
        "-n", namespace, "create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps"
    )
    control_plane.kubectl(
        "-n",
        namespace,
        "create",
        "rolebinding",
        "cm-reader",
        "--role=cm-reader",
        f"--serviceaccount={namespace}:reader",
    )

    def allowed() -> bool:
        return subprocess.run([*as_sa, "get", "configmaps"], capture_output=True, text=True).returncode == 0

    assert poll(allowed, timeout=30)


def test_namespace_controller_finishes_deletion(control_plane: KubeTools) -> None:
    control_plane.create_namespace("testbed-ns-deletion")
    control_plane.kubectl("-n", "testbed-ns-deletion", "create", "configmap", "c")
    control_plane.kubectl("delete", "namespace", "testbed-ns-deletion", "--wait=false")

    def gone() -> bool:
        return control_plane.kubectl("get", "namespace", "testbed-ns-deletion", check=False).returncode != 0

    assert poll(gone, timeout=120)


def test_serviceaccount_controller_creates_default(control_plane: KubeTools, namespace: str) -> None:
    assert poll(
        lambda: control_plane.kubectl("-n", namespace, "get", "sa", "default", check=False).returncode == 0,
        60,
    )


def test_helm_lint_and_install(control_plane: KubeTools, namespace: str) -> None:
    chart = str(DATA / "tinychart")
    control_plane.helm("lint", "--strict", chart)
    control_plane.helm("install", "tiny", chart, "-n", namespace, "--set", "greeting=hi there")
    cm = control_plane.kubectl_json("-n", namespace, "get", "configmap", "tiny-greeting")
    assert cm["data"]["greeting"] == "hi there"
    listed = json.loads(control_plane.helm("list", "-n", namespace, "-o", "json").stdout)
    assert [r["name"] for r in listed] == ["tiny"]
    control_plane.helm("uninstall", "tiny", "-n", namespace)
    assert (
        control_plane.kubectl("-n", namespace, "get", "configmap", "tiny-greeting", check=False).returncode
        != 0
    )


def test_apiserver_restart_keeps_data(restartable_control_plane: ControlPlane, namespace: str) -> None:
    restartable_control_plane.kubectl("-n", namespace, "create", "configmap", "survivor")
    restartable_control_plane.restart_apiserver()
    restartable_control_plane.kubectl("-n", namespace, "get", "configmap", "survivor")
