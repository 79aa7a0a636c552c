"""`make demo KEEP=1`: what it prints works as pasted, its operator log outlives it, `make cluster-down`
stops it. Runs `python -m testbed demo` exactly as the Makefile does, with its state in a temp dir."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from testbed.controlplane import REPO, binaries_dir
from testbed.polling import poll


def test_kept_demo_prints_a_working_check_and_cluster_down_stops_it(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KEEP": "1",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),  # its own state file, not the developer's
        "DBAASCTL_TESTBED_BIN": str(binaries_dir()),
        "PYTHONPATH": f"{REPO / 'tests' / 'e2e'}:{REPO}",
    }
    out_path = tmp_path / "demo.out"
    with out_path.open("w") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "testbed", "demo"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        assert poll(lambda: "KEEP=1" in out_path.read_text() or demo.poll() is not None, 400, 1.0)
        text = out_path.read_text()
        assert demo.poll() is None, text
        (check,) = [
            line.split("#")[0].strip() for line in text.splitlines() if " check --kubeconfig " in line
        ]
        proc = subprocess.run(["bash", "-c", check], capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert len([line for line in proc.stdout.splitlines() if "  ok  " in line]) == 3, proc.stdout
        log = Path(re.search(r"operator log \(kept after the demo stops\): (\S+)", text).group(1))  # type: ignore[union-attr]

        down = subprocess.run(
            [sys.executable, "-m", "testbed", "cluster-down"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert down.returncode == 0, down.stdout + down.stderr
        assert "the demo (make demo KEEP=1) stopped" in down.stdout
        assert demo.wait(timeout=30) == 0
        assert log.exists()
        assert "dbaasctl" in log.read_text()
        again = subprocess.run(
            [sys.executable, "-m", "testbed", "cluster-down"], cwd=REPO, env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert "no control plane running" in again.stdout
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
            demo.wait(timeout=120)
