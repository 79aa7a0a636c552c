"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

The binaries are the pinned upstream ones built by `tests/e2e/controlplane/build.sh` (nothing is faked:
RBAC, admission, CEL validation, TokenRequest and garbage collection are the real implementations).
Everything lives in one temp dir and listens on 127.0.0.1 with free ports; `stop()` leaves no process.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import port_for

from testbed import pki
from testbed.process import Service

REPO = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO / "tests" / "e2e" / "controlplane" / "build.sh"
KCM_CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    # Aggregated ClusterRoles (the chart's aggregate-to-edit/view roles) are filled in by this controller.
    "clusterrole-aggregation-controller",
    # What turns the chart's Deployment into pods on the test bed's node (testbed.node), and marks a
    # stopped node NotReady; the PodDisruptionBudget's status.
    "deployment-controller",
    "replicaset-controller",
    "node-lifecycle-controller",
    "disruption-controller",
    # A Service's ready pods, which the API server's service proxy picks from (EndpointSlices in v1.37,
    # Endpoints in v1.35): how the rotation roll-out test reaches its application without kube-proxy.
    "endpointslice-controller",
    "endpoints-controller",
)
#: The Kubernetes minor the test bed runs: "current" (newest supported, `make test`) or "compat" (oldest
#: supported, `make test-compat`). Each has its own pinned binaries (tests/e2e/controlplane/build.sh).
PROFILE = os.environ.get("DBAASCTL_KUBE_PROFILE", "current")


def binaries_dir() -> Path:
    """Where the pinned binaries are; builds them on first use (minutes) and reuses them after.

    The directory also goes first on this process's PATH, so every `kubectl` the suite runs (tests,
    helm's children, documented commands) is the one built with the server: client and server never skew.
    """
    override = os.environ.get("DBAASCTL_TESTBED_BIN")
    if override and (Path(override) / "kube-apiserver").exists():
        found = Path(override)
    else:
        out = subprocess.run(["bash", str(BUILD_SCRIPT), PROFILE], check=True, capture_output=True, text=True)
        found = Path(out.stdout.strip().splitlines()[-1])
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != str(found):
        os.environ["PATH"] = os.pathsep.join([str(found), path])
    return found


def pinned_version() -> str:
    """The Kubernetes version the current profile's binaries are built at, e.g. "v1.37.2"."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), PROFILE, "--print-version"], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def _free_port() -> int:
    return int(port_for.select_random())


class KubeTools:
    """kubectl and helm bound to one kubeconfig."""

    def __init__(self, kubeconfig: Path, helm_bin: Path | None, scratch: Path) -> None:
        self.kubeconfig = kubeconfig
        self.helm_bin = helm_bin
        self.scratch = scratch  # per-run files (helm home, minted kubeconfigs)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        cmd = ["kubectl", f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, env=self.env()
        )
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def helm(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        if self.helm_bin is None:
            raise RuntimeError("helm is not available in this test bed")
        cmd = [str(self.helm_bin), f"--kubeconfig={self.kubeconfig}", *args]
        env = self.env()
        # helm keeps caches/config under HOME by default: keep them inside the run.
        home = self.scratch / "helm-home"
        env.update(
            HELM_CACHE_HOME=str(home / "cache"),
            HELM_CONFIG_HOME=str(home / "config"),
            HELM_DATA_HOME=str(home / "data"),
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        self.kubectl("create", "namespace", name)
        if labels:
            self.kubectl("label", "namespace", name, *[f"{k}={v}" for k, v in labels.items()])
        return name

    def service_account_token(
        self, namespace: str, name: str, *, create: bool = True, seconds: int = 7200
    ) -> str:
        """A bound token minted through the TokenRequest API, as a pod would get it."""
        if create:
            self.kubectl("-n", namespace, "create", "serviceaccount", name, check=False)
        return self.kubectl("-n", namespace, "create", "token", name, f"--duration={seconds}s").stdout.strip()

    def service_account_kubeconfig(self, namespace: str, name: str, *, create: bool = True) -> Path:
        """A kubeconfig that acts as the ServiceAccount: no admin credentials at all."""
        token = self.service_account_token(namespace, name, create=create)
        cfg = json.loads(
            self.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json").stdout
        )
        cluster = cfg["clusters"][0]
        path = self.scratch / f"sa-{namespace}-{name}-{secrets.token_hex(3)}.kubeconfig"
        write_kubeconfig(
            path, cluster["cluster"]["server"], cluster["cluster"], token, user=f"{namespace}-{name}"
        )
        return path


def write_kubeconfig(path: Path, server: str, cluster: dict[str, Any], token: str, *, user: str) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": {**cluster, "server": server}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": user}}],
        "current-context": "testbed",
    }
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    path.chmod(0o600)


class ControlPlane(KubeTools):
    """etcd + kube-apiserver + kube-controller-manager; restartable piecewise for fault tests."""

    def __init__(self, workdir: Path | None = None, *, with_controller_manager: bool = True) -> None:
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="dbaasctl-cp-"))
        self.bin_dir = binaries_dir()
        super().__init__(self.workdir / "admin.kubeconfig", self.bin_dir / "helm", self.workdir)
        self.with_controller_manager = with_controller_manager
        self.etcd_port = _free_port()
        self.etcd_peer_port = _free_port()
        self.api_port = _free_port()
        self.kcm_port = _free_port()
        self.admin_token = secrets.token_urlsafe(32)
        self.pki = pki.generate(self.workdir / "pki")
        (self.workdir / "tokens.csv").write_text(
            f'{self.admin_token},testbed-admin,testbed-admin-uid,"system:masters"\n', encoding="utf-8"
        )
        (self.workdir / "tokens.csv").chmod(0o600)
        self.server = f"https://127.0.0.1:{self.api_port}"
        write_kubeconfig(
            self.kubeconfig,
            self.server,
            {"certificate-authority-data": base64.b64encode(self.pki.ca_cert.read_bytes()).decode()},
            self.admin_token,
            user="testbed-admin",
        )
        self._ssl = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        self.etcd = Service(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=testbed",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
                f"--initial-cluster=testbed=http://127.0.0.1:{self.etcd_peer_port}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            self.workdir / "etcd.log",
            self._etcd_ready,
            start_timeout=60,
        )
        self.apiserver = Service(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={self.pki.serving_cert}",
                f"--tls-private-key-file={self.pki.serving_key}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--client-ca-file={self.pki.ca_cert}",
                f"--token-auth-file={self.workdir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={self.pki.sa_key}",
                f"--service-account-signing-key-file={self.pki.sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                # As on production clusters: setting blockOwnerDeletion needs update on the owner's finalizers.
                "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
                # Bound tokens expire when they say they do (no one-year grace), so a pod's token
                # rotation is exercised for real.
                "--service-account-extend-token-expiration=false",
                # The test bed's node (testbed.node) is reached by its name on loopback.
                "--kubelet-preferred-address-types=Hostname",
                f"--kubelet-client-certificate={self.pki.kubelet_client_cert}",
                f"--kubelet-client-key={self.pki.kubelet_client_key}",
                "--v=1",
            ],
            self.workdir / "kube-apiserver.log",
            self._api_ready,
            start_timeout=180,
        )
        self.controller_manager = Service(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.kcm_port}",
                "--leader-elect=false",
                f"--controllers={','.join(KCM_CONTROLLERS)}",
                f"--service-account-private-key-file={self.pki.sa_key}",
                f"--root-ca-file={self.pki.ca_cert}",
                "--v=1",
            ],
            self.workdir / "kube-controller-manager.log",
            self._kcm_ready,
            start_timeout=120,
        )

    # -- probes ---------------------------------------------------------------------------------------
    def _etcd_ready(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.etcd_port}/health", timeout=2) as resp:
            return bool(json.loads(resp.read()).get("health") == "true")

    def _api_ready(self) -> bool:
        with urllib.request.urlopen(f"{self.server}/readyz", timeout=5, context=self._ssl) as resp:
            return bool(resp.status == 200)

    def _kcm_ready(self) -> bool:
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # kcm serves a self-signed cert; only liveness is probed
        with urllib.request.urlopen(
            f"https://127.0.0.1:{self.kcm_port}/healthz", timeout=2, context=insecure
        ) as r:
            return bool(r.status == 200)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> ControlPlane:
        try:
            self.etcd.start()
            self.apiserver.start()
            if self.with_controller_manager:
                self.controller_manager.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, *, keep_workdir: bool = False) -> None:
        for service in (self.controller_manager, self.apiserver, self.etcd):
            service.stop()
        if self._own_workdir and not keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def restart_apiserver(self, *, down_seconds: float = 0.0, sig: int = signal.SIGTERM) -> None:
        """Stop (gracefully or with SIGKILL) and start the API server on the same port and data."""
        if sig == signal.SIGKILL:
            self.apiserver.kill()
        else:
            self.apiserver.stop(sig)
        time.sleep(down_seconds)
        self.apiserver.start()

    def restart_etcd(self, *, down_seconds: float = 0.0) -> None:
        self.etcd.stop()
        time.sleep(down_seconds)
        self.etcd.start()

    def compact_etcd(self) -> int:
        """Compact etcd's history up to now, so any older resourceVersion is gone for good.

        Combined with an API server restart (which empties its watch cache) a watch resumed from an old
        resourceVersion gets 410 Gone, the condition an informer must survive by relisting.
        """
        base = f"http://127.0.0.1:{self.etcd_port}/v3"

        def post(path: str, body: dict[str, Any]) -> Any:
            req = urllib.request.Request(
                f"{base}/{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())

        # A range over an empty key still returns the store's current revision in its header.
        revision = int(post("kv/range", {"key": base64.b64encode(b"\0").decode()})["header"]["revision"])
        post("kv/compaction", {"revision": revision, "physical": True})
        return revision

    def expire_resource_versions(self) -> None:
        self.compact_etcd()
        self.restart_apiserver()

    def version(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.server}/version", timeout=5, context=self._ssl) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data


class ExistingCluster(KubeTools):
    """The cluster KUBECONFIG points at (e.g. kind), for DBAASCTL_E2E_USE_EXISTING_CLUSTER=1.

    Fault-injection helpers (restarts, compaction) are unavailable there; tests that need them skip.
    """

    def __init__(self) -> None:
        path = Path(os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))).expanduser()
        helm = shutil.which("helm")
        self.workdir = Path(tempfile.mkdtemp(prefix="dbaasctl-existing-"))
        super().__init__(path, Path(helm) if helm else None, self.workdir)
        cfg = json.loads(self.kubectl("config", "view", "--minify", "-o", "json").stdout)
        self.server = cfg["clusters"][0]["cluster"]["server"]

    def stop(self, *, keep_workdir: bool = False) -> None:
        if not keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def use_existing_cluster() -> bool:
    return os.environ.get("DBAASCTL_E2E_USE_EXISTING_CLUSTER") == "1" and bool(os.environ.get("KUBECONFIG"))
