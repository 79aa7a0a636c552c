"""values.schema.json refuses what the API server would refuse: the CRD-defined values are the CRDs' schemas.

A value the schema accepts but the CRD rejects fails *after* Helm has started the release (a failed
revision); so every constraint the CRDs put on a field reachable from values must be in the schema.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from dbaasctl.api.common import DURATION_PATTERN

REPO = Path(__file__).resolve().parents[2]
SYNC = REPO / "deploy" / "helm" / "sync_schema.py"
SCHEMA = REPO / "deploy" / "helm" / "dbaasctl" / "values.schema.json"
CONSTRAINTS = (
    "type",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
)


def sync() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_schema", SYNC)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sync_schema"] = module
    spec.loader.exec_module(module)
    return module


def constrained(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, keyword, value) for every constraint in an OpenAPI/JSON schema tree."""
    for keyword in CONSTRAINTS:
        if keyword in node:
            yield path, keyword, node[keyword]
    for name, sub in (node.get("properties") or {}).items():
        yield from constrained(sub, f"{path}.{name}")
    for keyword in ("items", "additionalProperties"):
        if isinstance(node.get(keyword), dict):
            yield from constrained(node[keyword], f"{path}[{keyword}]")


def crd_spec(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "deploy" / "crds" / name).read_text(encoding="utf-8"))
    spec: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec


def test_schema_is_in_sync_with_the_crds() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == sync().render(), "run deploy/helm/sync_schema.py"


@pytest.mark.parametrize(
    ("crd", "where"),
    [
        ("operatorconfigs.dbaasctl.io.yaml", ("operatorConfig",)),
        ("databaseclasses.dbaasctl.io.yaml", ("databaseClasses", "items", "spec")),
    ],
)
def test_every_crd_constraint_is_in_the_values_schema(crd: str, where: tuple[str, ...]) -> None:
    values = json.loads(SCHEMA.read_text(encoding="utf-8"))
    node = values
    for step in where:
        node = node["items"] if step == "items" else node["properties"][step]
    ours = {(p, k): v for p, k, v in constrained(node)}
    missing = []
    for path, keyword, value in constrained(crd_spec(crd)):
        if (path, keyword) == ("", "required") and where[0] == "operatorConfig":
            continue  # the chart renders `dbms: []` itself
        have = ours.get((path, keyword))
        if keyword == "type" and isinstance(have, list):
            have = next(t for t in have if t != "null")  # values may say null for "operator default"
        if keyword == "pattern" and have is not None and have != value:
            continue  # a stricter pattern (object names) is allowed; checked below for durations
        if have != value:
            missing.append(f"{path or '.'}: {keyword}={value!r}, values.schema.json has {have!r}")
    assert not missing, "\n".join(missing)


def test_durations_use_the_crds_pattern() -> None:
    values = json.loads(SCHEMA.read_text(encoding="utf-8"))
    endpoint = values["properties"]["operatorConfig"]["properties"]["dbms"]["items"]["properties"][
        "endpoints"
    ]
    assert endpoint["items"]["properties"]["operationTimeout"]["pattern"] == DURATION_PATTERN
    rotation = values["properties"]["databaseClasses"]["items"]["properties"]["spec"]["properties"][
        "rotation"
    ]
    assert rotation["properties"]["interval"]["pattern"] == DURATION_PATTERN


def test_conversion_refuses_unknown_keys_and_drops_kubernetes_extensions() -> None:
    converted = sync().to_json_schema(crd_spec("databaseclasses.dbaasctl.io.yaml"))
    text = json.dumps(converted)
    assert "x-kubernetes" not in text
    assert converted["additionalProperties"] is False
    assert converted["properties"]["operations"]["additionalProperties"] is False
