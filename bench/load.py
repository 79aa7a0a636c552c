"""A fixed, reproducible background load: the contended case measured on purpose, not by accident.

`BackgroundLoad(cpus=1.0)` starts one process per CPU of the machine, each burning its share of `cpus`
in a duty cycle (spin for `share * period`, sleep the rest; period 10 ms), at the default nice level, so
the subject, the API server, etcd and PostgreSQL compete with it exactly as with any other work. On a
2-core machine `cpus=1.0` keeps half of the machine busy (two processes at 50 %). The spinners do pure
Python arithmetic: no memory traffic, no I/O, the same work on every run.

What the machine actually did is recorded by the phases themselves (`machine_busy_pct`) and by
`state()`: the load average before and after, and the spinners' own CPU seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from bench import procstat

PERIOD_S = 0.010

_SPINNER = """
import sys, time
share, period = float(sys.argv[1]), float(sys.argv[2])
busy = share * period
x = 0
while True:
    start = time.perf_counter()
    while time.perf_counter() - start < busy:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    rest = period - (time.perf_counter() - start)
    if rest > 0:
        time.sleep(rest)
"""


@dataclass
class BackgroundLoad:
    #: CPUs' worth of work to keep busy (0 = none); spread evenly over one process per CPU.
    cpus: float
    period_s: float = PERIOD_S
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _load_at_start: list[float] = field(default_factory=list)

    @property
    def workers(self) -> int:
        return os.cpu_count() or 1

    @property
    def share(self) -> float:
        return min(1.0, self.cpus / self.workers)

    def start(self) -> None:
        self._load_at_start = [round(x, 2) for x in os.getloadavg()]
        if self.cpus <= 0:
            return
        for _ in range(self.workers):
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", _SPINNER, str(self.share), str(self.period_s)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.processes:
            if proc.poll() is None:
                total += procstat.sample(proc.pid).cpu_seconds
        return total

    def state(self) -> dict[str, Any]:
        return {
            "background_cpus": self.cpus,
            "background_processes": len(self.processes),
            "background_duty": round(self.share, 3),
            "background_cpu_seconds": round(self.cpu_seconds(), 1),
            "load_average_at_start": self._load_at_start,
            "load_average_now": [round(x, 2) for x in os.getloadavg()],
        }

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()

    def __enter__(self) -> BackgroundLoad:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
