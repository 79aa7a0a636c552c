"""The documentation's developer commands, executed as written against the test bed.

Blocks marked `<!-- doc-test: developer -->` (shell) or `<!-- doc-test: developer file=NAME -->`
(a manifest the next commands use) in README.md, docs/ and deploy/samples/README.md run in document
order, with the namespace and names they show, as a developer bound to the built-in `edit` role in
`shop`, against what a sysadmin and a DBA set up by the book: the chart installed as release `dbaasctl`
in `dbaasctl-system` with the PostgreSQL sample's endpoint and class, the DSN Secret created by hand,
the operator running as the chart's ServiceAccount, and the sample procedures on a real PostgreSQL.
Any failing command fails the test, so copy-paste correctness is kept, not hoped for.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.controlplane import REPO, KubeTools
from testbed.dbms import PostgresServer
from testbed.operator import SAMPLES, OperatorProcess, install_postgres_procedures
from testbed.polling import poll

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "deploy" / "samples" / "README.md"]
MARKED = re.compile(
    r"^[ \t]*<!-- doc-test: (?P<path>[a-z-]+)(?P<opts>[^>]*?)\s*-->\n"
    r"(?P<indent>[ \t]*)```(?P<lang>\w+)\n(?P<body>.*?)^[ \t]*```",
    re.S | re.M,
)
SYSTEM, APP, RELEASE = "dbaasctl-system", "shop", "dbaasctl"


@dataclass(frozen=True)
class Block:
    source: str
    lang: str
    body: str
    file: str | None


def blocks(path_name: str) -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in MARKED.finditer(text):
            if m.group("path") != path_name:
                continue
            opts = dict(o.split("=", 1) for o in m.group("opts").split())
            line = text.count("\n", 0, m.start()) + 1
            body = textwrap.dedent(m.group("body"))
            found.append(Block(f"{doc.relative_to(REPO)}:{line}", m.group("lang"), body, opts.get("file")))
    return found


def test_every_developer_shell_block_in_the_readme_is_marked() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## For developers", 1)[1].split("\n## ", 1)[0]
    fenced = re.findall(r"^```sh\n", section, flags=re.M)
    marked = re.findall(r"^<!-- doc-test: developer -->\n```sh\n", section, flags=re.M)
    assert len(fenced) == len(marked) >= 3
    assert [b.file for b in blocks("developer") if b.file] == ["database.yaml"]


def _load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


@pytest.fixture
def by_the_book(
    control_plane: KubeTools, crds: Path, postgres: PostgresServer, tmp_path: Path
) -> Iterator[Path]:
    """The sysadmin's and DBA's part, done as docs/helm.md and deploy/samples say; yields the developer's
    kubeconfig (a ServiceAccount in `shop` bound to `edit`)."""
    kube = control_plane
    for ns in (SYSTEM, APP):
        kube.create_namespace(ns)
    operator: OperatorProcess | None = None
    installed = False
    try:
        dsn = install_postgres_procedures(postgres)
        sample = {d["kind"]: d for d in _load(SAMPLES / "postgres" / "operatorconfig.yaml")}
        secret = sample["Secret"]
        kube.kubectl(
            "-n", SYSTEM, "create", "secret", "generic", secret["metadata"]["name"], f"--from-literal=dsn={dsn}"
        )  # fmt: skip
        (klass,) = _load(SAMPLES / "postgres" / "databaseclass.yaml")
        values = {
            "operatorConfig": {
                "rps": sample["OperatorConfig"]["spec"]["rps"],
                "keepalive": sample["OperatorConfig"]["spec"]["keepalive"],
                "dbms": sample["OperatorConfig"]["spec"]["dbms"],
            },
            "databaseClasses": [{"name": klass["metadata"]["name"], "spec": klass["spec"]}],
            "keepDatabaseClassesOnUninstall": False,
            "operator": {"watchNamespaces": [APP]},
        }
        (tmp_path / "my-values.yaml").write_text(yaml.safe_dump(values))
        notes = kube.helm("install", RELEASE, str(REPO / "deploy" / "helm" / "dbaasctl"), "-n", SYSTEM,
                          "-f", str(tmp_path / "my-values.yaml")).stdout  # fmt: skip
        installed = True
        assert "WARNING" not in notes, notes
        # The chart's Deployment needs a kubelet; the same process runs here, as the chart's ServiceAccount.
        account = kube.service_account_kubeconfig(SYSTEM, RELEASE, create=False)
        operator = OperatorProcess(
            account, SYSTEM, tmp_path / "operator", extra_args=[f"--watch-namespaces={APP}"]
        ).start()
        kube.kubectl("-n", APP, "create", "serviceaccount", "developer")
        kube.kubectl("-n", APP, "create", "rolebinding", "developer", "--clusterrole=edit",
                     f"--serviceaccount={APP}:developer")  # fmt: skip
        developer = kube.service_account_kubeconfig(APP, "developer", create=False)
        can = [
            "kubectl",
            f"--kubeconfig={developer}",
            "auth",
            "can-i",
            "create",
            "databases.dbaasctl.io",
            "-n",
            APP,
        ]
        assert poll(lambda: subprocess.run(can, capture_output=True, check=False).returncode == 0, 60)
        yield developer
    finally:
        if operator is not None:
            kube.kubectl("-n", APP, "delete", "db", "--all", "--timeout=60s", check=False)
            operator.stop()
        if installed:
            kube.helm("uninstall", RELEASE, "-n", SYSTEM, check=False)
        for ns in (APP, SYSTEM):
            kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_developer_commands_work_as_written(
    by_the_book: Path, control_plane: KubeTools, tmp_path: Path
) -> None:
    developer = by_the_book
    work = tmp_path / "developer"
    work.mkdir()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "KUBECONFIG": str(developer)}
    ran = blocks("developer")
    assert sum(b.lang == "sh" for b in ran) >= 3
    for block in ran:
        if block.file:
            (work / block.file).write_text(block.body, encoding="utf-8")
            continue
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-xc", block.body],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"{block.source} failed:\n{proc.stderr}\n{proc.stdout}"
    # The last block deleted the Database; its Secret went with it.
    kube = control_plane
    assert kube.kubectl("-n", APP, "get", "db", "orders-db", check=False).returncode != 0
    assert kube.kubectl("-n", APP, "get", "secret", "orders-db-credentials", check=False).returncode != 0
