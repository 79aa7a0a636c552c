"""deploy/samples/README.md only names files that exist, so its commands work as pasted."""

from __future__ import annotations

import re
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "samples"
DBMS_DIRS = [p for p in SAMPLES.iterdir() if p.is_dir() and (p / "procedures.sql").exists()]


def test_every_file_the_samples_readme_names_exists() -> None:
    text = (SAMPLES / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"(?<![\w./-])([\w-]+(?:/[\w.-]+)*\.(?:yaml|sql))\b", text))
    assert "postgres/procedures.sql" in named
    missing = []
    for name in sorted(named):
        # A bare name is one every DBMS directory has.
        where = [SAMPLES] if "/" in name else DBMS_DIRS
        if not all((d / name).exists() for d in where):
            missing.append(name)
    assert not missing, missing
