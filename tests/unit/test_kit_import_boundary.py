"""The kit is a library: kube/, observability/ and primitives/ import nothing of dbaasctl's domain code,
and kube/ and dbms/ know nothing of each other.

Checked on the source (every `import` / `from ... import`, including ones inside functions), so a lazy
import cannot sneak a dependency past the test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "dbaasctl"
ALLOWED = {
    "kube": ("dbaasctl.kube", "dbaasctl.observability", "dbaasctl.primitives"),
    "observability": ("dbaasctl.observability",),
    "primitives": ("dbaasctl.primitives",),
    "dbms": ("dbaasctl.dbms", "dbaasctl.observability", "dbaasctl.primitives"),
}


def imported_modules(path: Path, package: str | None = None) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    if package is None:
        package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                found.append(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.append(node.module)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_kit_packages_only_import_allowed_internal_modules(package: str) -> None:
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no sources found for {package}"
    violations = [
        f"{f.relative_to(SRC)}: {mod}"
        for f in files
        for mod in imported_modules(f)
        if (mod == "dbaasctl" or mod.startswith("dbaasctl."))
        and not any(mod == a or mod.startswith(a + ".") for a in ALLOWED[package])
    ]
    assert not violations, "forbidden imports:\n" + "\n".join(violations)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text(
        "import json\n"
        "def f():\n    from dbaasctl.api import database\n"
        "from ..controller import secrets\n"
        "from . import workqueue\n",
        encoding="utf-8",
    )
    mods = imported_modules(sample, package="dbaasctl.kube")
    assert mods.count("dbaasctl.api") == 1
    assert "dbaasctl.controller" in mods
    assert "dbaasctl.kube" in mods


def _module_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for package in ("kube", "primitives"):
        for f in sorted((SRC / package).rglob("*.py")):
            parts = f.relative_to(SRC.parent).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = f
    return files


def test_the_kit_has_no_import_cycles() -> None:
    files = _module_files()
    graph = {
        name: sorted({m for m in imported_modules(f) if m in files and m != name})
        for name, f in files.items()
    }
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
    # The package __init__ re-exports its modules; a module importing its own package would be a cycle.
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
    assert len(graph) > 20, "the checker found the kit's modules"
