"""What a test bed's node can leave on the machine, captured before and compared after.

A node touches the machine outside its temp dir: processes that leave their parent (containerd shims,
containers), mounts, cgroups, iptables rules, network links, and runtime state under /run and /var. The
e2e session snapshots all of it at the start and fails if anything new is still there at the end, so a
clean-up gap shows up as a red run rather than as a machine that slowly fills with debris.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psutil

#: Process names a node starts; any of them alive after the run outlived the test bed.
NODE_PROCESSES = frozenset(
    {"containerd", "kubelet", "kube-scheduler", "containerd-shim", "containerd-shim-runc-v2"}
)
#: Runtime state directories the kubelet, containerd and CNI use regardless of their configured roots.
STATE_DIRS = (
    Path("/run/containerd"),
    Path("/var/lib/cni"),
    Path("/var/lib/kubelet"),
    Path("/var/log/containers"),
    Path("/var/log/pods"),
    Path("/run/netns"),
)


def _mounts() -> frozenset[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines():
        point = line.split()[4]
        points.append(point.encode().decode("unicode_escape"))  # \040 for a space, etc.
    return frozenset(points)


def cgroup_roots() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, the v2 unified tree)."""
    roots = []
    for line in Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines():
        pre, _, post = line.partition(" - ")
        if post.split()[0] in {"cgroup", "cgroup2"}:
            roots.append(Path(pre.split()[4]))
    return roots


def _cgroups() -> frozenset[str]:
    """Top-level cgroups (where the kubelet's kubepods tree lives) and everything below kubepods."""
    found: set[str] = set()
    for root in cgroup_roots():
        try:
            for child in root.iterdir():
                if child.is_dir():
                    found.add(str(child))
                    if child.name.startswith("kubepods"):
                        found.update(str(p) for p in child.rglob("*") if p.is_dir())
        except OSError:
            continue
    return frozenset(found)


def _iptables() -> frozenset[str]:
    if shutil.which("iptables-save") is None:
        return frozenset()
    rules: set[str] = set()
    for table in ("nat", "filter"):
        out = subprocess.run(
            ["iptables-save", "-t", table], capture_output=True, text=True, check=False, timeout=30
        ).stdout
        rules.update(f"{table}: {line}" for line in out.splitlines() if line.startswith("-A"))
    return frozenset(rules)


def _links() -> frozenset[str]:
    return frozenset(p.name for p in Path("/sys/class/net").iterdir())


def _paths() -> frozenset[str]:
    found: set[str] = set()
    for base in STATE_DIRS:
        if base.exists():
            found.add(str(base))
            found.update(str(p) for p in base.rglob("*"))
    return frozenset(found)


def _processes() -> frozenset[str]:
    found = set()
    for proc in psutil.process_iter(["name", "pid"]):
        if proc.info["name"] in NODE_PROCESSES:
            found.add(f"{proc.info['name']}({proc.info['pid']})")
    return frozenset(found)


@dataclass(frozen=True)
class HostState:
    processes: frozenset[str] = field(default_factory=frozenset)
    mounts: frozenset[str] = field(default_factory=frozenset)
    cgroups: frozenset[str] = field(default_factory=frozenset)
    iptables: frozenset[str] = field(default_factory=frozenset)
    links: frozenset[str] = field(default_factory=frozenset)
    paths: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def capture(cls) -> HostState:
        return cls(_processes(), _mounts(), _cgroups(), _iptables(), _links(), _paths())

    def added_since(self, before: HostState) -> dict[str, list[str]]:
        """What exists now and did not before, by kind; empty when nothing was left behind."""
        out = {}
        for kind in ("processes", "mounts", "cgroups", "iptables", "links", "paths"):
            new = sorted(getattr(self, kind) - getattr(before, kind))
            if new:
                out[kind] = new
        return out
