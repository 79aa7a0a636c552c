"""The README's YAML examples are real: each parses into our models, so the docs cannot drift."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from dbaasctl.api import Database, DatabaseClass, OperatorConfig
from dbaasctl.templates import validate_template

README = Path(__file__).resolve().parents[2] / "README.md"
MODELS: dict[str, type[BaseModel]] = {
    "Database": Database,
    "DatabaseClass": DatabaseClass,
    "OperatorConfig": OperatorConfig,
}


def _examples() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    docs = [d for block in blocks for d in yaml.safe_load_all(block) if isinstance(d, dict)]
    return [d for d in docs if d.get("kind") in MODELS]


def test_readme_has_an_example_of_each_resource() -> None:
    assert {d["kind"] for d in _examples()} == set(MODELS)


@pytest.mark.parametrize("doc", _examples(), ids=lambda d: str(d["kind"]))
def test_readme_example_parses(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "dbaasctl.io/v1"
    model = MODELS[doc["kind"]].model_validate(doc)
    if isinstance(model, DatabaseClass):
        for template in re.findall(r"\{\{.*?\}\}", yaml.safe_dump(doc)):
            validate_template(template)
