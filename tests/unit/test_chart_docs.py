"""docs/helm.md documents every value of the chart, with the chart's real default."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "deploy" / "helm" / "dbaasctl" / "values.yaml"
DOC = REPO / "docs" / "helm.md"
# Objects documented as a whole rather than key by key.
WHOLE = {"podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe"}


def leaves(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in WHOLE:
            out.update(leaves(value, f"{path}."))
        else:
            out[path] = value
    return out


def documented() -> dict[str, str]:
    """key -> default cell of the values table."""
    rows: dict[str, str] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `([A-Za-z.]+)` \| (.*?) \|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_every_value_is_in_the_table() -> None:
    values = leaves(yaml.safe_load(VALUES.read_text(encoding="utf-8")))
    rows = documented()
    assert sorted(set(values) - set(rows)) == []
    assert sorted(set(rows) - set(values)) == []


def test_scalar_defaults_match() -> None:
    values = leaves(yaml.safe_load(VALUES.read_text(encoding="utf-8")))
    rows = documented()
    for key, value in values.items():
        if key in WHOLE or key == "topologySpreadConstraints":
            continue
        # Strings as themselves (`json`), everything else as JSON (`true`, `8`, `null`, `""`, `[]`).
        shown = value if isinstance(value, str) and value else json.dumps(value)
        assert rows[key] == f"`{shown}`", f"{key}: docs say {rows[key]}, values.yaml has {value!r}"
