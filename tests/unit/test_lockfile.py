"""Installs are reproducible: every dependency is pinned with hashes, and every install uses the pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(specs: list[str]) -> set[str]:
    names = set()
    for spec in specs:
        match = _NAME.match(spec.strip())
        assert match is not None, spec
        names.add(_normal(match.group()))
    return names


def _pins(lock: str) -> dict[str, str]:
    text = (REPO / "requirements" / lock).read_text(encoding="utf-8")
    pins: dict[str, str] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        head = block.split("\\", 1)[0].strip()
        if not head or head.startswith("#"):
            continue
        name, sep, version = head.partition("==")
        assert sep, f"{lock}: {head!r} is not pinned with =="
        assert "--hash=sha256:" in block, f"{lock}: {head!r} has no hash"
        pins[_normal(name)] = version.split(";")[0].strip()
    return pins


@pytest.mark.parametrize(
    ("lock", "specs"),
    [
        ("runtime.lock", PROJECT["dependencies"]),
        ("dev.lock", PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]),
    ],
)
def test_every_declared_dependency_is_pinned_with_hashes(lock: str, specs: list[str]) -> None:
    missing = _requirement_names(specs) - set(_pins(lock))
    assert not missing, f"not in requirements/{lock} (run `make lock`): {sorted(missing)}"


def test_runtime_and_dev_pins_agree() -> None:
    runtime, dev = _pins("runtime.lock"), _pins("dev.lock")
    differ = {n: (v, dev[n]) for n, v in runtime.items() if n in dev and dev[n] != v}
    assert not differ, f"run `make lock`: {differ}"


def test_image_and_setup_install_from_the_locks() -> None:
    containerfile = (REPO / "Containerfile").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements/runtime.lock" in containerfile
    assert "pip wheel --wheel-dir /wheels --no-deps ." in containerfile
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements/dev.lock" in makefile
    assert "--no-deps -e ." in makefile
    assert re.search(r"^lock:", makefile, re.MULTILINE)
