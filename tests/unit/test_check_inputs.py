"""`dbaasctl check` input handling that needs no DBMS: duplicates across files, unreadable input."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from dbaasctl.check import CheckInputError, load, main

SAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "samples"


def test_duplicate_objects_across_files_are_warned_about(tmp_path: Path) -> None:
    copy = tmp_path / "class-copy.yaml"
    copy.write_text((SAMPLES / "postgres" / "databaseclass.yaml").read_text())
    inputs = load(
        [SAMPLES / "postgres" / "operatorconfig.yaml", SAMPLES / "postgres" / "databaseclass.yaml", copy]
    )
    (warning,) = inputs.warnings
    assert "DatabaseClass postgres-sample is defined in" in warning
    assert str(copy) in warning
    assert "databaseclass.yaml" in warning


def test_the_same_file_twice_is_a_duplicate_too() -> None:
    config = SAMPLES / "postgres" / "operatorconfig.yaml"
    inputs = load([config, config])
    assert any("Secret postgres-sample-dsn is defined twice" in w for w in inputs.warnings), inputs.warnings
    assert any("OperatorConfig dbaasctl-system/dbaasctl" in w for w in inputs.warnings), inputs.warnings


def test_unreadable_input_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [\n")
    with pytest.raises(CheckInputError, match="not valid YAML"):
        load([bad])
    err = io.StringIO()
    assert main([tmp_path / "missing.yaml"], io.StringIO(), err) == 2
    assert "No such file" in err.getvalue()
    assert main([SAMPLES / "postgres" / "databaseclass.yaml"], io.StringIO(), err) == 2
    assert "no OperatorConfig given" in err.getvalue()
