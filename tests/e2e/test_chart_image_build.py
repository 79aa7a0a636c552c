"""The image's build stage, replayed on the host without a container engine.

The build context is assembled exactly as the engine would (the Containerfile's COPY sources, filtered
by .containerignore), stage 1's `pip wheel` runs on it, and the resulting wheel's `dbaasctl` console
script (the image's ENTRYPOINT) is run from a clean install target: proof that the context is complete
and that the entry point exists in what ships, not only in the developer's editable install.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _static_checks() -> ModuleType:
    """The Containerfile parser of tests/unit/test_chart_image.py (one parser, not two)."""
    spec = importlib.util.spec_from_file_location(
        "chart_image_checks", REPO / "tests/unit/test_chart_image.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def assemble_build_context(dest: Path) -> list[str]:
    """Copy what stage 1 COPYs, minus what .containerignore excludes; returns the files copied."""
    checks = _static_checks()
    copied: list[str] = []
    for source in checks.context_sources():
        origin = REPO / source
        files = [origin] if origin.is_file() else sorted(p for p in origin.rglob("*") if p.is_file())
        for path in files:
            rel = path.relative_to(REPO).as_posix()
            if checks.excluded(rel):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            copied.append(rel)
    return copied


def test_wheel_from_the_build_context_runs_the_entrypoint(tmp_path: Path) -> None:
    context = tmp_path / "context"
    copied = assemble_build_context(context)
    assert "pyproject.toml" in copied
    assert "src/dbaasctl/cli.py" in copied
    assert not [c for c in copied if "__pycache__" in c]

    wheels = tmp_path / "wheels"
    # As stage 1 does: `pip wheel` with build isolation (pyproject's build backend from the index).
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(wheels),
            ".",
        ],
        cwd=context,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("dbaasctl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "dbaasctl = dbaasctl.cli:main" in archive.read(entry_points).decode()
        assert "dbaasctl/py.typed" in names

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    script = target / "bin" / "dbaasctl"
    assert script.is_file()
    # Dependencies come from this venv; the package itself must come from the wheel.
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import dbaasctl; print(dbaasctl.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert where.stdout.strip().startswith(str(target))
    entrypoint = ["dbaasctl", "run"]
    run = subprocess.run(
        [sys.executable, str(script), *entrypoint[1:], "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    for option in ("--kubeconfig", "--config-name", "--leader-elect", "--health-addr", "--metrics-addr"):
        assert option in run.stdout
