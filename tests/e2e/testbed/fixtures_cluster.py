"""pytest fixtures over the control plane: one per session, a namespace per test."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testbed.controlplane import REPO, ControlPlane, ExistingCluster, KubeTools, use_existing_cluster
from testbed.leakscan import SUITE
from testbed.operator import STARTED

CRDS = REPO / "deploy" / "crds"


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane | ExistingCluster]:
    cluster: ControlPlane | ExistingCluster
    if use_existing_cluster():
        cluster = ExistingCluster()
        yield cluster
        cluster.stop()
        return
    cluster = ControlPlane()
    cluster.start()
    SUITE.add(cluster.admin_token, "control-plane admin token")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kube(control_plane: KubeTools) -> KubeTools:
    return control_plane


@pytest.fixture
def kubectl(control_plane: KubeTools) -> Callable[..., subprocess.CompletedProcess[str]]:
    return control_plane.kubectl


@pytest.fixture
def restartable_control_plane(control_plane: KubeTools) -> ControlPlane:
    """The local control plane, for fault tests; skipped on an existing cluster."""
    if not isinstance(control_plane, ControlPlane):
        pytest.skip("fault injection needs the local control plane")
    return control_plane


@pytest.fixture(scope="session")
def crds(control_plane: KubeTools) -> Path:
    """The project's CRDs installed and Established."""
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
    return CRDS


@pytest.fixture
def namespace(control_plane: KubeTools, request: pytest.FixtureRequest) -> Iterator[str]:
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"{base}-{secrets.token_hex(3)}"
    control_plane.create_namespace(name)
    yield name
    SUITE.add_secrets_in(control_plane, [name])
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session", autouse=True)
def suite_leak_scan() -> Iterator[None]:
    """After the whole e2e run: no credential any fixture saw appears in any operator's log."""
    yield
    if not STARTED:
        return
    for op in STARTED:
        if op.log_path.exists():
            SUITE.add_sink(f"operator log {op.log_path.name}", op.log_text())
    figures = SUITE.assert_clean()
    print(f"\nrun-wide leak scan: {figures} over {len(STARTED)} operator processes: 0 hits")


@pytest.fixture
def service_account_kubeconfig(control_plane: KubeTools) -> Callable[..., Path]:
    return control_plane.service_account_kubeconfig
