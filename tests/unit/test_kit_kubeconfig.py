"""Our own kubeconfig / in-cluster reading: the common credentials without kubernetes-asyncio's models."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dbaasctl.kube.config import UnsupportedKubeconfig, load_config, load_in_cluster, load_kubeconfig
from dbaasctl.kube.rest import KubeClient

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _write(tmp_path: Path, user: dict[str, object], **cluster: object) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c1", "cluster": {"server": "https://127.0.0.1:6443/", **cluster}},
            {"name": "c2", "cluster": {"server": "https://10.0.0.2:6443"}},
        ],
        "users": [{"name": "u1", "user": user}, {"name": "u2", "user": {"token": "other-token-value"}}],
        "contexts": [
            {"name": "one", "context": {"cluster": "c1", "user": "u1"}},
            {"name": "two", "context": {"cluster": "c2", "user": "u2"}},
        ],
        "current-context": "one",
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_token_and_inline_ca(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {"token": "t0ken-value-1234"},
        **{"certificate-authority-data": base64.b64encode(PEM).decode()},
    )
    creds = load_kubeconfig(str(path))
    assert creds.host == "https://127.0.0.1:6443"
    assert creds.token == "t0ken-value-1234"
    assert creds.ca_file is not None
    assert Path(creds.ca_file).read_bytes() == PEM
    assert Path(creds.ca_file).stat().st_mode & 0o077 == 0


def test_context_selection_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(PEM)
    (tmp_path / "tok").write_text("from-a-file\n", encoding="utf-8")
    path = _write(tmp_path, {"tokenFile": "tok", "client-certificate": "c.pem", "client-key": "k.pem"},
                  **{"certificate-authority": "ca.pem", "insecure-skip-tls-verify": True})  # fmt: skip
    creds = load_kubeconfig(str(path))
    assert creds.ca_file == str(tmp_path / "ca.pem")
    assert creds.token_file == str(tmp_path / "tok")
    assert creds.cert_file == str(tmp_path / "c.pem")
    assert creds.verify_ssl is False
    other = load_kubeconfig(str(path), context="two")
    assert (other.host, other.token) == ("https://10.0.0.2:6443", "other-token-value")
    with pytest.raises(ValueError, match="no context named 'three'"):
        load_kubeconfig(str(path), context="three")


@pytest.mark.parametrize(
    "user",
    [
        {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "get-token"}},
        {"auth-provider": {"name": "oidc"}},
        {"username": "admin", "password": "pw"},
    ],
)
def test_plugins_fall_back_to_the_full_loader(tmp_path: Path, user: dict[str, object]) -> None:
    with pytest.raises(UnsupportedKubeconfig):
        load_kubeconfig(str(_write(tmp_path, user)))


def test_in_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("sa-token-value", encoding="utf-8")
    (tmp_path / "ca.crt").write_bytes(PEM)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    creds = load_in_cluster(tmp_path)
    assert creds.host == "https://[fd00::1]:443"
    assert creds.token_file == str(tmp_path / "token")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(ValueError, match="not running in a cluster"):
        load_in_cluster(tmp_path)


async def test_token_file_is_reread_after_its_ttl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tok").write_text("first-token-value", encoding="utf-8")
    config, _ = await load_config(_write(tmp_path, {"tokenFile": "tok"}))
    client = KubeClient(config)
    try:
        assert await client.auth.headers() == {"Authorization": "Bearer first-token-value"}
        (tmp_path / "tok").write_text("second-token-value", encoding="utf-8")
        assert await client.auth.headers() == {"Authorization": "Bearer first-token-value"}
        monkeypatch.setattr("dbaasctl.kube.auth.TOKEN_FILE_TTL", -1.0)
        assert await client.auth.headers() == {"Authorization": "Bearer second-token-value"}
    finally:
        await client.close()


def test_the_operator_does_not_import_the_generated_api_models() -> None:
    """kubernetes-asyncio's models cost ~40 MB resident; the operator loads them only for exec plugins."""
    code = "import sys, dbaasctl.operator, dbaasctl.cli; print('kubernetes_asyncio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
