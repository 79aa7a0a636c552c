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
