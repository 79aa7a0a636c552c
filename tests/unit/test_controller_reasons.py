"""The reason vocabulary is valid for the API, documented, and the docs are generated from it."""

from __future__ import annotations

import re
from pathlib import Path

from dbaasctl.controller import reasons

REPO = Path(__file__).resolve().parents[2]
# metav1.Condition.reason, as the CRD enforces it.
CONDITION_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")


def test_every_reason_constant_is_catalogued_and_valid() -> None:
    constants = {
        value
        for name, value in vars(reasons).items()
        if name.isupper() and isinstance(value, str) and name not in ("COND_READY",)
    }
    catalogued = {r.name for r in reasons.CATALOGUE}
    assert constants == catalogued
    assert len(catalogued) == len(reasons.CATALOGUE)  # no duplicates
    for reason in reasons.CATALOGUE:
        assert CONDITION_REASON.fullmatch(reason.name), reason.name
        assert reason.name[0].isupper()  # CamelCase
        assert reason.event is not None or reason.ready is not None
        assert reason.meaning.endswith(".")


def test_docs_are_generated_from_the_catalogue() -> None:
    text = (REPO / "docs" / "conditions.md").read_text(encoding="utf-8")
    assert text == reasons.render_markdown(), "docs/conditions.md is stale; regenerate it (see its header)"
    for reason in reasons.CATALOGUE:
        assert f"`{reason.name}`" in text
