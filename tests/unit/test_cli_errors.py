"""The installed `dbaasctl` command: on PATH in the venv, short help, and no traceback for user mistakes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "deploy" / "samples" / "postgres"


def dbaasctl_bin() -> str:
    """The console script `make setup` installs next to the venv's python (`.venv/bin/dbaasctl`)."""
    found = shutil.which("dbaasctl", path=str(Path(sys.executable).parent))
    assert found, "no dbaasctl console script next to the interpreter: is the project installed?"
    return found


def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBAASCTL_")}
    return subprocess.run(
        [dbaasctl_bin(), *args], capture_output=True, text=True, timeout=60, env=env, check=False, **kwargs
    )  # type: ignore[call-overload, no-any-return]


def assert_one_clear_line(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines, "no error message"
    for needle in needles:
        assert needle in lines[-1], lines[-1]


def test_version_flag_and_command() -> None:
    for args in (["--version"], ["version"]):
        proc = run(*args)
        assert proc.returncode == 0
        assert proc.stdout.startswith("dbaasctl ")


def test_top_level_help_is_short_and_states_exit_codes() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) <= 30, proc.stdout
    for command in ("run", "check", "render", "migrate-config", "version"):
        assert re.search(rf"^    {command}\b", proc.stdout, flags=re.M), command
    assert "Exit status" in proc.stdout
    assert "Command-line entry points" not in proc.stdout  # not the module docstring


def test_check_help_documents_exit_codes() -> None:
    text = " ".join(run("check", "--help").stdout.split())
    assert "Exit status: 0 every check passed; 1 problems found" in text
    assert "2 input errors" in text


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "No such file"),
        ("clusters: [\n", "not valid YAML (line 2)"),
        ("- just\n- a list\n", "not a kubeconfig"),
    ],
    ids=["missing", "yaml", "shape"],
)
def test_run_with_a_bad_kubeconfig(tmp_path: Path, content: str | None, reason: str) -> None:
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)
    proc = run("run", f"--kubeconfig={path}", "--no-leader-elect", "--log-format=console")
    assert_one_clear_line(proc, 2, str(path), reason)


def test_check_with_a_bad_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "missing"
    proc = run("check", "--kubeconfig", str(path))
    assert_one_clear_line(proc, 2, str(path))


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert_one_clear_line(run("check", "-f", str(missing)), 2, str(missing))
    assert_one_clear_line(
        run("render", "-c", str(missing), "-d", str(SAMPLES / "database.yaml")), 2, str(missing)
    )
    directory = tmp_path / "dir.yaml"
    directory.mkdir()
    assert_one_clear_line(run("check", "-f", str(directory)), 2, str(directory))


def test_output_into_a_closed_pipe(tmp_path: Path) -> None:
    """`dbaasctl render ... | head -1`: the reader goes away; no traceback, the shell's 141."""
    big = tmp_path / "database.yaml"
    big.write_text(
        "apiVersion: dbaasctl.io/v1\nkind: Database\nmetadata: {name: big, namespace: shop}\n"
        f"spec: {{endpoint: pg-sample, params: {{blob: '{'x' * 200_000}'}}}}\n"
    )
    klass = tmp_path / "class.yaml"
    klass.write_text(
        (SAMPLES / "databaseclass.yaml").read_text().replace("{{ metadata.name }}", "{{ params.blob }}")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBAASCTL_")}
    proc = subprocess.Popen(
        [dbaasctl_bin(), "render", "-c", str(klass), "-d", str(big)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err
    assert "Exception ignored" not in err
