"""`make demo-cluster`, as the README shows it: image, `helm install` on a real node, a Database, its
Secret used. Runs `python -m testbed demo-cluster` exactly as the Makefile does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from testbed.controlplane import REPO, binaries_dir
from testbed.node import unavailable_reason


@pytest.mark.run_first  # the node is one per machine; the suite's own node holds it once started
@pytest.mark.timeout(1500)
def test_demo_cluster_shows_a_working_secret_from_the_in_cluster_operator() -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no test-bed node: {reason}")
    env = {
        **os.environ,
        "DBAASCTL_TESTBED_BIN": str(binaries_dir()),
        "PYTHONPATH": f"{REPO / 'tests' / 'e2e'}:{REPO}",
    }
    env.pop("KEEP", None)
    proc = subprocess.run(
        [sys.executable, "-m", "testbed", "demo-cluster"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1400,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "operator pod Ready after" in out
    assert "orders-db   True    Provisioned" in out
    assert "connected as " in out
    assert "demo-cluster succeeded" in out
