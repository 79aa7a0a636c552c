"""CPU time and memory of one process, read from /proc (Linux): what the subject under test costs.

CPU is utime + stime of the process itself (the operator and the raw baseline start no children).
Peak RSS is VmHWM; writing "5" to /proc/<pid>/clear_refs resets it to the current RSS, so each phase
reports its own peak instead of the peak of the process's whole life.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    at: float  # time.monotonic()
    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int


def _status_kib(text: str, field: str) -> int:
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def sample(pid: int) -> ProcSample:
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    # Fields after the command (which may contain spaces and parentheses): utime is 14th, stime 15th.
    rest = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(rest[11]), int(rest[12])
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    return ProcSample(
        at=time.monotonic(),
        cpu_seconds=(utime + stime) / _TICKS,
        rss_bytes=_status_kib(status, "VmRSS") * 1024,
        peak_rss_bytes=_status_kib(status, "VmHWM") * 1024,
    )


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS; False when the kernel or permissions do not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def _cpu_and_ppid(pid: int) -> tuple[float, int] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    rest = stat[stat.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / _TICKS, int(rest[1])


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process and its live descendants (PostgreSQL's backends are children of the
    postmaster, and their time only reaches the postmaster's counters once they exit)."""
    table: dict[int, tuple[float, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _cpu_and_ppid(int(entry.name))
            if found is not None:
                table[int(entry.name)] = found
    children: dict[int, list[int]] = {}
    for pid, (_cpu, ppid) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            total += table[pid][0]
        stack.extend(children.get(pid, []))
    return total


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return total - idle, total
