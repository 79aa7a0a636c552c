"""Where `make cluster-up` and `make demo KEEP=1` record what they run, so `make cluster-down` finds it."""

from __future__ import annotations

import json
import os
from pathlib import Path

STATE_DIR = Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "dbaasctl" / "cluster"
STATE_FILE = STATE_DIR / "state.json"
DEMO_FILE = STATE_DIR / "demo.json"


def alive(pid: int) -> bool:
    """Running, and not a zombie its parent has yet to reap (kill(pid, 0) succeeds on those)."""
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def register_demo(kubeconfig: Path, operator_log: Path) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "kubeconfig": str(kubeconfig), "operator_log": str(operator_log)}
    DEMO_FILE.write_text(json.dumps(record), encoding="utf-8")


def unregister_demo() -> None:
    try:
        if int(json.loads(DEMO_FILE.read_text(encoding="utf-8"))["pid"]) == os.getpid():
            DEMO_FILE.unlink()
    except (OSError, ValueError, KeyError):
        pass


def running_demo() -> dict[str, str] | None:
    """The kept demo's record while its process lives."""
    try:
        record: dict[str, str] = json.loads(DEMO_FILE.read_text(encoding="utf-8"))
        return record if alive(int(record["pid"])) else None
    except (OSError, ValueError, KeyError):
        return None
