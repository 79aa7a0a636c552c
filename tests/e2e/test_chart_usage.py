"""What the chart's NOTES tell people to run works: a developer bound to `edit` lists the `dbaas`
category and finds endpoints and class parameters; missing DSN Secrets and classes are warned about."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from testbed.controlplane import REPO, KubeTools
from testbed.polling import poll

CHART = REPO / "deploy" / "helm" / "dbaasctl"
SAMPLE_CLASS = REPO / "deploy" / "samples" / "postgres" / "databaseclass.yaml"


@pytest.fixture
def app_namespace(control_plane: KubeTools, namespace: str) -> Iterator[str]:
    name = f"{namespace}-app"[:63]
    control_plane.create_namespace(name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def as_user(kubeconfig: Path, command: str) -> subprocess.CompletedProcess[str]:
    """A NOTES line, run by a shell as the user (quotes and all), with only their kubeconfig."""
    return subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "KUBECONFIG": str(kubeconfig), "HOME": "/nonexistent"},
        timeout=60,
        check=False,
    )


def notes_commands(notes: str, namespace: str) -> list[str]:
    """The `kubectl ...` lines NOTES suggests for requesting a database, placeholders filled in."""
    section = notes.split("Request a database", 1)[1].split("\n\n", 1)[0]
    commands = []
    for line in section.splitlines()[1:]:
        command = re.sub(r"\s+# .*$", "", line.strip())
        if command.startswith("kubectl") and "<name>" not in command:
            commands.append(command.replace("<namespace>", namespace))
    return commands


@pytest.mark.parametrize("catalog", [True, False], ids=["catalog-readers", "no-catalog-readers"])
def test_a_developer_with_edit_can_follow_the_notes(
    control_plane: KubeTools, crds: Path, namespace: str, app_namespace: str, tmp_path: Path, catalog: bool
) -> None:
    """Every command NOTES suggests works for a developer bound to `edit`, with or without the
    catalogue role; without it NOTES does not suggest what would be forbidden, and says why."""
    kube = control_plane
    class_doc = yaml.safe_load(SAMPLE_CLASS.read_text())
    class_doc["metadata"]["name"] = f"{namespace}-class"
    values = {
        "operatorConfig": {
            "dbms": [
                {
                    "databaseClassName": class_doc["metadata"]["name"],
                    "endpoints": [{"name": "pg-main", "dsn": "postgresql://u:p@db.example:5432/postgres"}],
                }
            ]
        },
        "databaseClasses": [{"name": class_doc["metadata"]["name"], "spec": class_doc["spec"]}],
        "keepDatabaseClassesOnUninstall": False,
    }
    if not catalog:
        values["rbac"] = {"catalogReaders": []}
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    notes = kube.helm(
        "install", "rel", str(CHART), "-n", namespace, "-f", str(tmp_path / "values.yaml")
    ).stdout
    try:
        assert "WARNING" not in notes, notes  # the class and the DSN Secret come with the release
        kube.kubectl("-n", app_namespace, "create", "serviceaccount", "dev")
        kube.kubectl(
            "-n", app_namespace, "create", "rolebinding", "dev", "--clusterrole=edit",
            f"--serviceaccount={app_namespace}:dev",
        )  # fmt: skip
        dev = kube.service_account_kubeconfig(app_namespace, "dev", create=False)
        commands = notes_commands(notes, app_namespace)
        if catalog:
            assert any(c.startswith("kubectl get dbaas") for c in commands), notes
            assert any("get operatorconfig" in c for c in commands), notes
        else:
            assert commands == [f"kubectl get databases -n {app_namespace}"], notes
            assert "rbac.catalogReaders is empty" in notes, notes
        # The aggregation controller folds the chart's roles into `edit` asynchronously.
        assert poll(lambda: as_user(dev, commands[0]).returncode == 0, 60), as_user(dev, commands[0]).stderr
        outputs = {}
        for command in commands:
            proc = as_user(dev, command)
            assert proc.returncode == 0, f"{command}\n{proc.stderr}"
            outputs[command] = proc.stdout
        if catalog:
            text = "\n".join(outputs.values())
            assert class_doc["metadata"]["name"] in text  # the classes, with their parameters
            assert "dbaas.create_database" in text  # -o yaml: the procedures (and any declared parameters)
            assert f"{class_doc['metadata']['name']}: pg-main" in text  # endpoints per class
        else:
            proc = as_user(dev, f"kubectl get dbaas -n {app_namespace}")
            assert proc.returncode != 0
            assert "forbidden" in proc.stderr.lower(), proc.stderr
        # What stays closed: DSN Secrets, other namespaces' Databases, writing classes.
        for forbidden in (
            f"kubectl -n {namespace} get secrets",
            f"kubectl -n {namespace} get databases",
            "kubectl delete dbc --all",
        ):
            proc = as_user(dev, forbidden)
            assert proc.returncode != 0, forbidden
            assert "forbidden" in proc.stderr.lower(), proc.stderr
    finally:
        kube.helm("uninstall", "rel", "-n", namespace)


def test_notes_warn_about_missing_dsn_secrets_and_classes(
    control_plane: KubeTools, crds: Path, namespace: str, tmp_path: Path
) -> None:
    kube = control_plane
    values = {
        "operatorConfig": {
            "dbms": [
                {
                    "databaseClassName": f"{namespace}-missing-class",
                    "endpoints": [
                        {"name": "pg-a", "secretKeyRef": {"name": "absent-dsn", "key": "dsn"}},
                        {"name": "pg-b", "secretKeyRef": {"name": "present-dsn", "key": "url"}},
                        {"name": "pg-c", "secretKeyRef": {"name": "present-dsn", "key": "dsn"}},
                    ],
                }
            ]
        }
    }
    kube.kubectl("-n", namespace, "create", "secret", "generic", "present-dsn", "--from-literal=dsn=x")
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    # `helm template` cannot see the cluster: it must not claim anything is missing.
    rendered = kube.helm("template", "rel", str(CHART), "-n", namespace, "-f", str(tmp_path / "values.yaml"))
    assert rendered.returncode == 0
    notes = kube.helm(
        "install", "rel", str(CHART), "-n", namespace, "-f", str(tmp_path / "values.yaml")
    ).stdout
    try:
        warning = notes.split("WARNING:\n", 1)[1].split("\n\n", 1)[0]
        lines = [line.strip() for line in warning.splitlines()]
        assert lines == [
            f'- DatabaseClass "{namespace}-missing-class" does not exist: Databases on pg-a, pg-b, pg-c '
            "report ClassNotFound until it is created.",
            f"- Secret {namespace}/absent-dsn (the DSN of endpoint pg-a) does not exist: the endpoint is "
            "unavailable until it is created.",
            f'- Secret {namespace}/present-dsn has no key "url" (the DSN of endpoint pg-b).',
        ], notes
    finally:
        kube.helm("uninstall", "rel", "-n", namespace)


def test_upgrade_and_hand_edits_of_the_operator_config(
    control_plane: KubeTools, crds: Path, namespace: str, tmp_path: Path
) -> None:
    """docs/helm.md's account of `helm upgrade` over a hand-edited OperatorConfig, and its drift command."""
    kube = control_plane
    endpoint = {"name": "pg-a", "secretKeyRef": {"name": "pg-a-dsn", "key": "dsn"}, "rps": 2}
    values: dict[str, object] = {
        "operatorConfig": {"keepalive": 30, "dbms": [{"databaseClassName": "c", "endpoints": [endpoint]}]}
    }
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    kube.helm("install", "rel", str(CHART), "-n", namespace, "-f", str(path))
    drift = (
        f"{kube.helm_bin} --kubeconfig={kube.kubeconfig} get manifest rel -n {namespace}"
        f" | kubectl --kubeconfig={kube.kubeconfig} diff --server-side --force-conflicts -f -"
    )

    def live() -> dict[str, object]:
        spec: dict[str, object] = kube.kubectl_json("-n", namespace, "get", "operatorconfig", "rel-dbaasctl")[
            "spec"
        ]
        return spec

    try:
        clean = subprocess.run(
            ["bash", "-c", drift], capture_output=True, text=True, timeout=120, check=False
        )
        assert clean.returncode == 0, clean.stdout + clean.stderr
        hand = {
            "spec": {
                "keepalive": 7,
                "dbms": [{"databaseClassName": "c", "endpoints": [{**endpoint, "rps": 9}]}],
            }
        }
        kube.kubectl(
            "-n", namespace, "patch", "operatorconfig", "rel-dbaasctl", "--type=merge", "-p", json.dumps(hand)
        )
        shown = subprocess.run(
            ["bash", "-c", drift], capture_output=True, text=True, timeout=120, check=False
        )
        assert shown.returncode == 1, shown.stdout + shown.stderr
        assert "keepalive: 7" in shown.stdout

        # Helm 4 applies server-side: a hand edit of a field the chart sets is a conflict, and the
        # upgrade fails naming the field and who edited it; nothing is overwritten.
        refused = kube.helm("upgrade", "rel", str(CHART), "-n", namespace, "-f", str(path), check=False)
        assert refused.returncode != 0
        assert "conflict" in refused.stderr.lower(), refused.stderr
        assert ".spec.keepalive" in refused.stderr, refused.stderr
        spec = live()
        assert spec["keepalive"] == 7
        assert spec["dbms"][0]["endpoints"][0]["rps"] == 9  # type: ignore[index]

        # --force-conflicts: the chart's values win over every hand edit of a field it sets.
        kube.helm("upgrade", "rel", str(CHART), "-n", namespace, "-f", str(path), "--force-conflicts")
        spec = live()
        assert spec["keepalive"] == 30
        assert spec["dbms"][0]["endpoints"][0] == endpoint  # type: ignore[index]
        clean = subprocess.run(
            ["bash", "-c", drift], capture_output=True, text=True, timeout=120, check=False
        )
        assert clean.returncode == 0, clean.stdout + clean.stderr

        # --server-side=false: Helm 3's client-side merge from the previous release's manifest. With
        # the same values nothing is sent and every hand edit stays...
        kube.kubectl(
            "-n", namespace, "patch", "operatorconfig", "rel-dbaasctl", "--type=merge", "-p", json.dumps(hand)
        )
        kube.helm("upgrade", "rel", str(CHART), "-n", namespace, "-f", str(path), "--server-side=false")
        spec = live()
        assert spec["keepalive"] == 7
        assert spec["dbms"][0]["endpoints"][0]["rps"] == 9  # type: ignore[index]

        # ...and a change under dbms replaces the whole list; a field the chart did not change stays.
        endpoint["burst"] = 3
        path.write_text(yaml.safe_dump(values))
        kube.helm("upgrade", "rel", str(CHART), "-n", namespace, "-f", str(path), "--server-side=false")
        spec = live()
        assert spec["keepalive"] == 7
        assert spec["dbms"][0]["endpoints"][0] == endpoint  # type: ignore[index]
    finally:
        kube.helm("uninstall", "rel", "-n", namespace)
