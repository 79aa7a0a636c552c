"""The Containerfile and .containerignore, checked without a container engine.

hadolint (from the `dev` extra) lints the file; the rest reads its instructions: a multi-stage build
whose final stage has no build tools, runs as a numeric non-root user and starts `dbaasctl run`, a
real console script of the package. tests/e2e/test_chart_image_build.py builds the wheel from exactly the
build context the Containerfile sees and runs its entry point.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "Containerfile"
IGNORE = REPO / ".containerignore"
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|make|[a-z0-9.+-]+-dev|git|curl|wget)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def stages() -> list[Stage]:
    parsed: list[Stage] = []
    for keyword, args in instructions(CONTAINERFILE.read_text(encoding="utf-8")):
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            parsed.append(Stage(parts[0], name))
        elif parsed:
            parsed[-1].instructions.append((keyword, args))
    return parsed


def global_args() -> dict[str, str]:
    out: dict[str, str] = {}
    for keyword, args in instructions(CONTAINERFILE.read_text(encoding="utf-8")):
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in args:
            name, _, value = args.partition("=")
            out[name] = value
    return out


def hadolint() -> str:
    candidate = Path(sys.executable).parent / "hadolint"
    found = str(candidate) if candidate.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: install the dev extra (pip install -e '.[dev]')"
    return found


def test_hadolint_passes_at_the_strictest_threshold() -> None:
    proc = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", "--format", "json", str(CONTAINERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(proc.stdout or "[]")
    assert proc.returncode == 0, findings
    assert findings == []


def test_hadolint_does_flag_a_bad_containerfile(tmp_path: Path) -> None:
    """Control: the linter run above is live and would catch the classic mistakes."""
    bad = tmp_path / "Containerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nRUN pip install requests\n"
    )
    proc = subprocess.run(
        [hadolint(), "--no-color", "--format", "json", str(bad)], capture_output=True, text=True, check=False
    )
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert proc.returncode != 0
    assert {"DL3007", "DL3009", "DL3013"} <= codes


def test_multi_stage_slim_python_311() -> None:
    parsed = stages()
    assert len(parsed) >= 2
    base = global_args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"(docker\.io/library/)?python:3\.11-slim(-[a-z]+)?", base), base
    assert all(stage.base == "${PYTHON_IMAGE}" for stage in parsed)
    builder = parsed[0]
    assert builder.name == "build"
    assert any("pip wheel" in run for run in builder.all("RUN"))


def test_final_stage_has_no_build_tools_and_installs_only_built_wheels() -> None:
    final = stages()[-1]
    for run in final.all("RUN"):
        installs = re.findall(r"apt-get install[^&]*", run)
        for install in installs:
            assert not BUILD_TOOLS.search(install.replace("apt-get install", "")), install
        if "pip install" in run:
            assert "--no-index" in run
            assert "--mount=type=bind,from=build,source=/wheels" in run
            assert "pip uninstall -y setuptools wheel pip" in run
    # Nothing from the build context is copied into the final image: only the mounted wheels.
    assert final.all("COPY") == []
    assert final.all("ADD") == []


def test_final_stage_runs_as_numeric_non_root_user() -> None:
    users = stages()[-1].all("USER")
    assert users, "final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit()
    assert int(uid) != 0
    assert gid == "" or (gid.isdigit() and int(gid) != 0)


def test_oci_labels_and_version_match_the_package() -> None:
    final = stages()[-1]
    labels = " ".join(final.all("LABEL"))
    for key in ("title", "description", "version", "revision", "created", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    version_args = [a for a in final.all("ARG") if a.startswith("VERSION=")]
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert version_args == [f"VERSION={project['version']}"]
    assert f'org.opencontainers.image.licenses="{project["license"]}"' in labels


def test_entrypoint_is_the_packages_run_command() -> None:
    entrypoint = stages()[-1].all("ENTRYPOINT")
    assert len(entrypoint) == 1
    command = json.loads(entrypoint[0])  # exec form, so signals reach the operator directly
    assert command == ["dbaasctl", "run"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert command[0] in scripts
    installed = {ep.name: ep for ep in entry_points(group="console_scripts")}
    assert installed[command[0]].value == scripts[command[0]]
    main = installed[command[0]].load()
    with pytest.raises(SystemExit) as exited:
        main([command[1], "--help"])
    assert exited.value.code == 0


# --- .containerignore -----------------------------------------------------------------------------


def ignore_patterns() -> list[tuple[bool, str]]:
    out: list[tuple[bool, str]] = []
    for line in IGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        out.append((negated, line.lstrip("!").rstrip("/")))
    return out


def excluded(path: str) -> bool:
    """Docker/Buildah semantics: the last matching pattern decides; a match on a directory covers its content."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for negated, pattern in ignore_patterns():
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            verdict = not negated
    return verdict


def context_sources() -> list[str]:
    sources: list[str] = []
    for stage in stages():
        for args in stage.all("COPY"):
            if "--from=" in args:
                continue
            words = [w for w in args.split() if not w.startswith("--")]
            sources.extend(w.rstrip("/") for w in words[:-1])
    return sources


def test_containerignore_keeps_what_the_build_copies() -> None:
    sources = context_sources()
    assert {"pyproject.toml", "README.md", "src"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), source
        assert not excluded(source), f"{source} is copied but excluded by .containerignore"
    for module in (REPO / "src").rglob("*.py"):
        rel = module.relative_to(REPO).as_posix()
        assert not excluded(rel), rel


def test_containerignore_keeps_everything_else_out() -> None:
    for path in (
        ".venv/bin/python",
        ".git/config",
        "tests/unit/test_chart_image.py",
        "deploy/crds/x.yaml",
        "src/dbaasctl/__pycache__/cli.cpython-311.pyc",
        "kubeconfig",
        ".env",
        "Containerfile",
    ):
        assert excluded(path), path
