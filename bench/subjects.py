"""The processes under test: `dbaasctl run` (through the test bed's helper), the raw baseline and the kopf
peer (bench/peers/kopf_operator.py, started like the raw baseline from the same spec).

Each is a separate OS process, so its CPU time and memory are its own (the benchmark driver's watch
and JSON decoding are not charged to it), and each serves `rest_client_requests_total` on /metrics.
"""

from __future__ import annotations

import io
import os
import pstats
import secrets
import sys
import urllib.request
from pathlib import Path
from typing import Protocol

import port_for

from bench.raw import RawSpec
from testbed.controlplane import REPO
from testbed.operator import OperatorProcess
from testbed.process import Service

PROFILING = Path(__file__).resolve().parent / "profiling"


class Subject(Protocol):
    label: str

    @property
    def pid(self) -> int: ...

    @property
    def metrics_url(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def log_tail(self, lines: int = 30) -> str: ...


class OperatorSubject:
    def __init__(
        self,
        label: str,
        *,
        kubeconfig: Path,
        system_namespace: str,
        watch_namespace: str,
        workdir: Path,
        workers: int,
        leader_elect: bool,
        log_level: str = "info",
        profile: Path | None = None,
        extra_args: tuple[str, ...] = (),
        src: Path | None = None,
    ) -> None:
        """`src`: run the operator package from this directory instead of the working tree's (a
        revision to compare against, e.g. `git archive <rev> src | tar -x -C DIR`)."""
        self.label = label
        self.profile = profile
        env: dict[str, str] = {}
        if profile is not None or src is not None:
            path = [
                str(PROFILING) if profile is not None else "",
                str(src or REPO / "src"),
                os.environ.get("PYTHONPATH", ""),
            ]
            env = {"PYTHONPATH": os.pathsep.join(p for p in path if p)}
            if profile is not None:
                env["BENCH_PROFILE_OUT"] = str(profile)
        args = [f"--workers={workers}", f"--watch-namespaces={watch_namespace}", *extra_args]
        if leader_elect:
            # A lease of its own: a previous run's unreleased lease must not delay this start.
            args.append(f"--leader-election-id=bench-{secrets.token_hex(4)}")
        self.process = OperatorProcess(
            kubeconfig,
            system_namespace,
            workdir,
            extra_args=args,
            leader_elect=leader_elect,
            log_level=log_level,
            start_timeout=600.0,
            env=env,
        )

    @property
    def pid(self) -> int:
        pid = self.process.service.pid
        if pid is None:
            raise RuntimeError("the operator is not running")
        return pid

    @property
    def metrics_url(self) -> str:
        return self.process.metrics_url

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.process.stop()
        if self.profile is not None and self.profile.exists():
            summarise_profile(self.profile)

    def log_tail(self, lines: int = 30) -> str:
        return self.process.tail(lines)


def summarise_profile(path: Path, top: int = 40) -> Path:
    """`<profile>.txt`: the functions with the most own time, then the most cumulative time."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    text_path = path.with_suffix(".txt")
    text_path.write_text(out.getvalue(), encoding="utf-8")
    return text_path


class RawSubject:
    """A `python -m <module> SPEC.json` subject: the raw baseline, or a peer taking the same spec."""

    def __init__(
        self,
        *,
        label: str = "raw",
        module: str = "bench.raw",
        server: str,
        token: str,
        ca_file: str,
        namespace: str,
        dsn: str,
        concurrency: int,
        procedures: tuple[str, str, str],
        endpoint: str,
        workdir: Path,
    ) -> None:
        self.label = label
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = int(port_for.select_random())
        spec = RawSpec(
            server=server,
            token=token,
            ca_file=ca_file,
            namespace=namespace,
            dsn=dsn,
            concurrency=concurrency,
            create=procedures[0],
            rotate=procedures[1],
            delete=procedures[2],
            endpoint=endpoint,
            metrics_port=self.port,
        )
        spec_path = workdir / f"{label}-spec.json"
        spec.dump(spec_path)
        self.service = Service(
            label,
            [sys.executable, "-m", module, str(spec_path)],
            workdir / f"{label}.log",
            self._ready,
            start_timeout=60.0,
            stop_timeout=30.0,
            env={"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
            cwd=REPO,
        )

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)

    @property
    def pid(self) -> int:
        pid = self.service.pid
        if pid is None:
            raise RuntimeError(f"{self.label} is not running")
        return pid

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> None:
        self.service.start()

    def stop(self) -> None:
        self.service.stop()

    def log_tail(self, lines: int = 30) -> str:
        return self.service.tail(lines)
