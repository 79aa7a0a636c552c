"""A real node for the test bed: containerd, the kubelet and kube-scheduler run the pods it schedules.

Started and stopped like etcd and the API server (supervised children, loopback, free ports, one temp
dir), with what the components do not clean up themselves done here: shims (they leave containerd's
process group), the mounts under the node's dirs, the kubepods cgroups, the bridge and the iptables
rules. Pods sit on a private bridge; they reach the API server at the `kubernetes` Service address and
test-bed servers at the bridge's gateway through DNAT rules to loopback (standing in for kube-proxy).

One node per machine: the bridge, the subnet, the cgroup tree and the node name are fixed, and a lock
file keeps a second test bed from starting another node at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from testbed.controlplane import REPO, ControlPlane, _free_port
from testbed.hoststate import STATE_DIRS, HostState, cgroup_roots
from testbed.pki import KUBERNETES_SERVICE_IP
from testbed.polling import poll
from testbed.process import Service

BUILD_IMAGES = REPO / "tests" / "e2e" / "node" / "build-images.sh"
NODE_NAME = "localhost"  # the API server reaches the kubelet by this name (on 127.0.0.1)
BRIDGE = "dbaasctl0"
POD_SUBNET = "10.213.0.0/24"
GATEWAY = "10.213.0.1"
RULE_COMMENT = "dbaasctl-testbed"
LOCK = Path("/run/dbaasctl-testbed-node.lock")
CNI_BIN = Path("/usr/lib/cni")
TOOLS = (
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "ctr",
    "iptables",
    "ip",
    "buildah",
    "mmdebstrap",
    "gcc",
)


class NodeUnavailable(RuntimeError):
    """The machine cannot run a node; the message says why (tests skip with it)."""


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "a node needs root (containerd, the kubelet's mounts and cgroups, iptables)"
    if not cgroup_roots():
        return "no cgroup hierarchy is mounted"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    missing += [f"{CNI_BIN}/{p}" for p in ("bridge", "host-local", "loopback") if not (CNI_BIN / p).exists()]
    if missing:
        return f"missing on this machine: {', '.join(missing)} (`make setup` installs them)"
    return None


@dataclass(frozen=True)
class Image:
    tarball: Path
    ref: str


@dataclass(frozen=True)
class Images:
    operator: Image
    pause: Image


def build_images() -> Images:
    """The operator image from the Containerfile and the pause image; cached by content hash."""
    out = subprocess.run(["bash", str(BUILD_IMAGES)], check=True, capture_output=True, text=True)
    found = {}
    for line in out.stdout.splitlines():
        name, tarball, ref = line.split()
        found[name] = Image(Path(tarball), ref)
    return Images(operator=found["operator"], pause=found["pause"])


def _iptables(action: str, rule: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["iptables", "-w", "-t", "nat", action, "PREROUTING", *rule],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip


def _sysctl(key: str, value: str | None = None) -> str:
    path = Path("/proc/sys") / key.replace(".", "/")
    if value is not None:
        path.write_text(value, encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


def _kill_members(cgroups: list[str]) -> None:
    """Kill what the node's cgroups still hold. A container whose shim was gone before the shims were
    killed (a pod deleted while the node stopped) is re-parented to init; it would keep its cgroup and
    its pod's network namespace (a veth on the host) after the test bed stopped."""
    pids: set[int] = set()
    for path in cgroups:
        for procs in Path(path).rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(pid) for pid in procs.read_text(encoding="utf-8").split())
    victims = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            proc.kill()
            victims.append(proc)
    psutil.wait_procs(victims, timeout=30)


class Node:
    """containerd + kubelet + kube-scheduler against one ControlPlane."""

    def __init__(self, control_plane: ControlPlane, images: Images) -> None:
        reason = unavailable_reason()
        if reason:
            raise NodeUnavailable(reason)
        self.cp = control_plane
        self.images = images
        self.workdir = Path(tempfile.mkdtemp(prefix="dbaasctl-node-"))
        self.ctr_dir = self.workdir / "containerd"
        self.socket = self.ctr_dir / "containerd.sock"
        self.kubelet_dir = self.workdir / "kubelet"
        self.kubelet_port = _free_port()
        self.kubelet_healthz_port = _free_port()
        self.scheduler_port = _free_port()
        self.pod_logs = self.workdir / "pod-logs"
        self._rules: list[list[str]] = []
        self._lock: IO[str] | None = None
        self._before: HostState | None = None
        self._ip_forward: str | None = None
        self.containerd = Service(
            "containerd",
            ["containerd", f"--config={self.ctr_dir / 'config.toml'}"],
            self.workdir / "containerd.log",
            self._containerd_ready,
            start_timeout=60,
            # Images come from `ctr images import` only: a pull (an image a test did not import) fails at
            # once instead of reaching out to a registry.
            env={"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""},
        )
        self.kubelet = Service(
            "kubelet",
            [
                str(control_plane.bin_dir / "kubelet"),
                f"--config={self.workdir / 'kubelet.yaml'}",
                f"--kubeconfig={control_plane.kubeconfig}",
                f"--root-dir={self.kubelet_dir}",
                f"--cert-dir={self.workdir / 'kubelet-pki'}",
                f"--hostname-override={NODE_NAME}",
                "--v=1",
            ],
            self.workdir / "kubelet.log",
            self._kubelet_ready,
            start_timeout=120,
        )
        self.scheduler = Service(
            "kube-scheduler",
            [
                str(control_plane.bin_dir / "kube-scheduler"),
                f"--kubeconfig={control_plane.kubeconfig}",
                f"--authentication-kubeconfig={control_plane.kubeconfig}",
                f"--authorization-kubeconfig={control_plane.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.scheduler_port}",
                "--leader-elect=false",
                "--v=1",
            ],
            self.workdir / "kube-scheduler.log",
            self._scheduler_ready,
            start_timeout=120,
        )

    # -- configuration ---------------------------------------------------------------------------------
    def _write_configs(self) -> None:
        state = self.ctr_dir / "state"
        cni_conf = self.ctr_dir / "net.d"
        cni_conf.mkdir(parents=True)
        (cni_conf / "10-testbed.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "testbed",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "isDefaultGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                                "dataDir": str(self.ctr_dir / "ipam"),
                            },
                        },
                        {"type": "loopback"},
                    ],
                }
            ),
            encoding="utf-8",
        )
        disabled = [
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.tracing.processor.v1.otlp",
            "io.containerd.internal.v1.tracing",
        ]
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        (self.ctr_dir / "config.toml").write_text(
            f"""version = 2
root = "{self.ctr_dir / "root"}"
state = "{state}"
disabled_plugins = {json.dumps(disabled)}
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[{cri}]
  sandbox_image = "{self.images.pause.ref}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails to start ("can't get final
  # child's PID from pipe").
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni_conf}"
""",
            encoding="utf-8",
        )
        kubelet = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.kubelet_healthz_port,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "imageServiceEndpoint": f"unix://{self.socket}",
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "failCgroupV1": False,
            "makeIPTablesUtilChains": False,
            "podLogsDir": str(self.pod_logs),
            "volumePluginDir": str(self.workdir / "volume-plugins"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.cp.pki.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "syncFrequency": "10s",
            "nodeStatusReportFrequency": "10s",
            "serializeImagePulls": False,
            "resolvConf": "/etc/resolv.conf",
        }
        (self.workdir / "kubelet.yaml").write_text(json.dumps(kubelet, indent=2), encoding="utf-8")

    # -- probes ----------------------------------------------------------------------------------------
    def _containerd_ready(self) -> bool:
        return self.ctr("version", check=False).returncode == 0

    def _kubelet_ready(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.kubelet_healthz_port}/healthz", timeout=2) as r:
            return bool(r.status == 200)

    def _scheduler_ready(self) -> bool:
        import ssl

        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # self-signed serving cert; only liveness is probed
        with urllib.request.urlopen(
            f"https://127.0.0.1:{self.scheduler_port}/healthz", timeout=2, context=insecure
        ) as r:
            return bool(r.status == 200)

    def node_ready(self) -> bool:
        got = self.cp.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if got.returncode != 0:
            return False
        conditions = json.loads(got.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        cmd = ["ctr", f"--address={self.socket}", "--namespace=k8s.io", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)

    # -- networking ------------------------------------------------------------------------------------
    def _add_rule(self, rule: list[str]) -> None:
        full = [*rule, "-m", "comment", "--comment", RULE_COMMENT]
        added = _iptables("-A", full)
        if added.returncode != 0:
            raise RuntimeError(f"iptables: {added.stderr.strip()}")
        self._rules.append(full)

    def _dnat(self, address: str, port: int, to_port: int) -> None:
        self._add_rule(
            ["-i", BRIDGE, "-d", address, "-p", "tcp", "--dport", str(port),
             "-j", "DNAT", "--to-destination", f"127.0.0.1:{to_port}"]
        )  # fmt: skip

    def forward(self, port: int) -> str:
        """Make a loopback server on `port` reachable from pods at GATEWAY:port; returns GATEWAY."""
        self._dnat(GATEWAY, port, port)
        return GATEWAY

    def _network_up(self) -> None:
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True, capture_output=True)
        subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True, capture_output=True)
        # Pods' packets DNAT'ed to 127.0.0.1 must be routable: allowed on this bridge only.
        _sysctl(f"net.ipv4.conf.{BRIDGE}.route_localnet", "1")
        self._ip_forward = _sysctl("net.ipv4.ip_forward")  # the bridge plugin turns it on
        self._dnat(KUBERNETES_SERVICE_IP, 443, self.cp.api_port)

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> Node:
        lock = LOCK.open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            lock.close()
            raise NodeUnavailable("another test bed's node is running on this machine") from exc
        self._lock = lock
        self._before = HostState.capture()
        try:
            self._write_configs()
            self._network_up()
            self.containerd.start()
            for image in (self.images.pause, self.images.operator):
                self.ctr("images", "import", str(image.tarball))
            self.kubelet.start()
            self.scheduler.start()
            if not poll(self.node_ready, 120):
                raise RuntimeError(
                    f"node {NODE_NAME} never became Ready; kubelet log:\n{self.kubelet.tail()}"
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, *, keep_workdir: bool = False) -> None:
        """Pods, kubelet, containerd, shims, mounts, cgroups, network, state dirs: in that order."""
        if self.kubelet.running() and self.containerd.running():
            self.cp.kubectl("cordon", NODE_NAME, check=False, timeout=30)
            self.cp.kubectl(
                "delete", "pods", "--all-namespaces", "--all", f"--field-selector=spec.nodeName={NODE_NAME}",
                "--grace-period=5", "--timeout=60s", check=False, timeout=90,
            )  # fmt: skip
        self.scheduler.stop()
        self.kubelet.stop()
        self.containerd.stop()
        self._kill_shims()
        self._unmount()
        self._remove_cgroups()
        for rule in reversed(self._rules):
            _iptables("-D", rule)
        self._rules.clear()
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        if self._ip_forward is not None:
            _sysctl("net.ipv4.ip_forward", self._ip_forward)
            self._ip_forward = None
        self._remove_state()
        if not keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _kill_shims(self) -> None:
        """Shims run in their own session; kill each with the containers it holds."""
        shims = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if cmdline and "containerd-shim" in cmdline[0] and str(self.socket) in cmdline:
                shims.append(proc)
        victims = []
        for shim in shims:
            with contextlib.suppress(psutil.Error):
                victims += shim.children(recursive=True)
            victims.append(shim)
        for proc in victims:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(victims, timeout=30)

    def _unmount(self) -> None:
        before = self._before.mounts if self._before else frozenset()
        ours = (str(self.workdir), *(str(d) for d in STATE_DIRS))
        for _ in range(3):
            new = [m for m in HostState.capture().mounts - before if m.startswith(ours)]
            if not new:
                return
            for point in sorted(new, key=len, reverse=True):
                if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
                    subprocess.run(["umount", "-l", point], capture_output=True, check=False)

    def _remove_cgroups(self) -> None:
        before = self._before.cgroups if self._before else frozenset()
        for _ in range(20):
            left = sorted(
                (c for c in HostState.capture().cgroups - before if "/kubepods" in c), key=len, reverse=True
            )
            if not left:
                return
            _kill_members(left)
            for path in left:
                for sub in sorted(
                    (p for p in Path(path).rglob("*") if p.is_dir()), key=lambda p: len(str(p)), reverse=True
                ):
                    with contextlib.suppress(OSError):
                        sub.rmdir()
                with contextlib.suppress(OSError):
                    Path(path).rmdir()
            time.sleep(0.5)

    def _remove_state(self) -> None:
        """What the components create outside their configured dirs (CNI cache, kubelet defaults, shim sockets)."""
        before = self._before.paths if self._before else frozenset()
        new = sorted((p for p in HostState.capture().paths - before), key=len)
        for path in new:
            p = Path(path)
            if not p.exists() and not p.is_symlink():
                continue  # removed with a parent
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()

    # -- observation -----------------------------------------------------------------------------------
    def container_pids(self, pod_uid: str) -> list[int]:
        """Host pids of a pod's processes (its cgroup names the pod), for checking what the kernel sees."""
        pids = []
        for proc in psutil.process_iter(["pid"]):
            try:
                cgroup = Path(f"/proc/{proc.pid}/cgroup").read_text(encoding="utf-8")
            except OSError:
                continue
            if f"pod{pod_uid}" in cgroup or f"pod{pod_uid.replace('-', '_')}" in cgroup:
                pids.append(proc.pid)
        return pids

    def pod_log(self, namespace: str, pod: str, container: str) -> str:
        """The container's log as the kubelet wrote it (all restarts, oldest first)."""
        texts = []
        for path in sorted(self.pod_logs.glob(f"{namespace}_{pod}_*/{container}/*.log")):
            with contextlib.suppress(OSError):
                texts.append(path.read_text(encoding="utf-8", errors="replace"))
        return "".join(texts)
