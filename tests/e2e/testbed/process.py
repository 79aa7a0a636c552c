"""One supervised child process of the test bed: started with its log in a file, probed until ready, stopped.

mirakuru marks every child with an environment variable and kills leftovers at interpreter exit, so a
failing or interrupted run does not leave servers behind; we add log files (a PIPE nobody reads would
block a chatty server) and a readiness probe with a bounded wait.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import psutil
from mirakuru import SimpleExecutor
from mirakuru.exceptions import ProcessExitedWithError


class ServiceError(RuntimeError):
    pass


class Service:
    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        ready: Callable[[], bool],
        *,
        start_timeout: float = 120.0,
        stop_timeout: float = 20.0,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self._ready = ready
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._env = env or {}
        self._cwd = cwd
        self._executor: SimpleExecutor | None = None
        self._log: IO[str] | None = None

    @property
    def pid(self) -> int | None:
        if self._executor is None or self._executor.process is None:
            return None
        return int(self._executor.process.pid)

    def running(self) -> bool:
        return self._executor is not None and bool(self._executor.running())

    def start(self) -> None:
        if self.running():
            return
        self._log = self.log_path.open("a", encoding="utf-8")
        self._executor = SimpleExecutor(
            self.command,
            shell=False,
            timeout=self._stop_timeout,  # mirakuru's wait for a graceful stop before it kills
            envvars=self._env,
            cwd=str(self._cwd) if self._cwd else None,
            stdin=None,
            stdout=self._log,
            stderr=self._log,
        )
        self._executor.start()
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if not self._executor.running():
                code = self._executor.process.returncode if self._executor.process else None
                raise ServiceError(
                    f"{self.name} exited with {code} while starting; log: {self.log_path}\n{self.tail()}"
                )
            try:
                if self._ready():
                    return
            except Exception:
                pass
            time.sleep(0.2)
        self.stop()
        raise ServiceError(
            f"{self.name} not ready after {self._start_timeout:.0f}s; log: {self.log_path}\n{self.tail()}"
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self._executor is not None:
            try:
                self._executor.stop(stop_signal=sig)
            except ProcessExitedWithError:
                pass  # a non-zero exit on SIGTERM is still a stop
            except Exception:  # the process tree could not be stopped gracefully: kill it
                self.kill()
            self._executor = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL the process and everything it started, as a machine or container crash would.

        The group alone is not enough: PostgreSQL backends call setsid() and would outlive the postmaster,
        holding the shared memory a restart needs.
        """
        if self._executor is not None and self._executor.process is not None:
            pid = self._executor.process.pid
            children: list[psutil.Process] = []
            with contextlib.suppress(psutil.Error):
                children = psutil.Process(pid).children(recursive=True)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            for child in children:
                with contextlib.suppress(psutil.Error):
                    child.kill()
            self._executor.process.wait(timeout=30)
            psutil.wait_procs(children, timeout=30)
            self._executor = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(
                self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return ""
