"""`make help` lists every make target the documentation tells people to run."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "deploy" / "samples" / "README.md"]


def documented_targets() -> set[str]:
    text = "\n".join(p.read_text(encoding="utf-8") for p in DOCS)
    return set(re.findall(r"\bmake ([a-z][a-z0-9-]*)", text))


def test_make_help_lists_every_documented_target() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    documented = documented_targets()
    assert {"demo", "test", "test-e2e", "cluster-down"} <= documented  # the scan finds them
    assert sorted(documented - listed) == []
