"""The chart ships the CRDs byte for byte as deploy/crds/ has them (sync with deploy/helm/sync-crds.sh)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "deploy" / "crds"
CHART_CRDS = REPO / "deploy" / "helm" / "dbaasctl" / "crds"


def test_chart_crds_are_identical_copies() -> None:
    source = {p.name: p.read_bytes() for p in SOURCE.glob("*.yaml")}
    shipped = {p.name: p.read_bytes() for p in CHART_CRDS.iterdir() if p.is_file()}
    assert source, "deploy/crds/ has no CRDs"
    assert sorted(shipped) == sorted(source), "run deploy/helm/sync-crds.sh"
    stale = [name for name in source if shipped[name] != source[name]]
    assert not stale, f"chart copies differ from deploy/crds/: {stale}; run deploy/helm/sync-crds.sh"


def test_chart_ships_all_three_kinds() -> None:
    kinds = {
        yaml.safe_load(p.read_text(encoding="utf-8"))["spec"]["names"]["kind"]
        for p in CHART_CRDS.glob("*.yaml")
    }
    assert kinds == {"Database", "DatabaseClass", "OperatorConfig"}
