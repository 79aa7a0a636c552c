"""What `kubectl explain` says matches what the code does: reasons, deletion policies, defaults.

The CRD descriptions are the first documentation a developer reads; they name condition reasons and
describe deletion policies, so they are checked against the code's catalogue (controller/reasons.py)
and the API models, like docs/conditions.md is.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbaasctl.api.database import DELETION_POLICIES, DeletionPolicy
from dbaasctl.controller import reasons

REPO = Path(__file__).resolve().parents[2]
CRDS = sorted((REPO / "deploy" / "crds").glob("*.yaml"))
#: Field -> reasons its description must name (the outcomes a user meets through that field).
MUST_NAME = {
    ("databases", ".spec.endpoint"): {"EndpointNotFound", "NamespaceNotAllowed"},
    ("databases", ".spec.params"): {"InvalidParameters"},
    ("databases", ".spec.secretName"): {"SecretConflict"},
    ("databases", ".spec.deletionPolicy"): {"DeleteFailed", "Retained"},
    ("databaseclasses", ".spec.operations.rotate"): {"OperationNotSupported"},
    ("databaseclasses", ".spec.parameters"): {"InvalidParameters"},
}


def descriptions(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, str]]:
    if "description" in node:
        yield path, " ".join(str(node["description"]).split())
    for name, sub in (node.get("properties") or {}).items():
        yield from descriptions(sub, f"{path}.{name}")
    for keyword in ("items", "additionalProperties"):
        if isinstance(node.get(keyword), dict):
            yield from descriptions(node[keyword], f"{path}[]")


def crd_texts() -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for path in CRDS:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        plural = doc["spec"]["names"]["plural"]
        version = doc["spec"]["versions"][0]
        for field, text in descriptions(version["schema"]["openAPIV3Schema"]):
            out[(plural, field)] = text
        for column in version.get("additionalPrinterColumns") or []:
            if "description" in column:
                out[(plural, f"column {column['name']}")] = " ".join(column["description"].split())
    return out


def test_every_reason_a_description_names_is_in_the_catalogue() -> None:
    catalogued = {r.name for r in reasons.CATALOGUE}
    named = {
        (where, reason)
        for where, text in crd_texts().items()
        for reason in re.findall(r"\breasons? ([A-Z][A-Za-z]+(?:, [A-Z][A-Za-z]+)*)", text)
    }
    unknown = sorted(
        (where, name) for where, group in named for name in group.split(", ") if name not in catalogued
    )
    assert not unknown, unknown


@pytest.mark.parametrize(("where", "expected"), sorted(MUST_NAME.items()))
def test_fields_name_the_reasons_users_meet(where: tuple[str, str], expected: set[str]) -> None:
    text = crd_texts()[where]
    assert {r for r in expected if re.search(rf"\b{r}\b", text)} == expected, text


def test_deletion_policies_are_described_as_the_code_behaves() -> None:
    text = crd_texts()[("databases", ".spec.deletionPolicy")]
    assert set(DELETION_POLICIES) == set(typing.get_args(DeletionPolicy))
    for policy, meaning in DELETION_POLICIES.items():
        assert " ".join(meaning.split()) in text, f"{policy}: {text}"
    crd = yaml.safe_load((REPO / "deploy" / "crds" / "databases.dbaasctl.io.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert schema["properties"]["deletionPolicy"]["enum"] == list(DELETION_POLICIES)
    assert "only removes the Secret" not in text
    conditions = (REPO / "docs" / "conditions.md").read_text(encoding="utf-8")
    assert "the Secret is released" in conditions


def test_endpoint_defaults_are_described_as_the_code_applies_them() -> None:
    from dbaasctl.api.operatorconfig import DEFAULT_OPERATION_TIMEOUT
    from dbaasctl.primitives.tokenbucket import TokenBucket

    texts = crd_texts()
    endpoint = ".spec.dbms[].endpoints[]"
    assert "0 or unset: 10" in texts[("operatorconfigs", f"{endpoint}.maxConcurrentOperations")]
    assert "the rps rounded up, at least 1" in texts[("operatorconfigs", f"{endpoint}.burst")]
    assert TokenBucket(2.5).burst == 3
    assert TokenBucket(0.2).burst == 1
    timeout = int(DEFAULT_OPERATION_TIMEOUT.total_seconds())
    assert f"Defaults to {timeout}s" in texts[("operatorconfigs", f"{endpoint}.operationTimeout")]


def test_class_status_is_not_claimed_to_be_written() -> None:
    assert "Not written by the operator" in crd_texts()[("databaseclasses", ".status")]
    src = "\n".join(p.read_text() for p in (REPO / "src" / "dbaasctl").rglob("*.py"))
    assert not re.search(r"DATABASE_CLASSES\.path\([^)]*status", src)
