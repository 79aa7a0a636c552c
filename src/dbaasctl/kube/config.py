"""Where the API server is and how to authenticate: kubeconfig, in-cluster, kubernetes-asyncio fallback.

Resolution follows controller-runtime: explicit path, then $KUBECONFIG, then in-cluster, then
~/.kube/config. The credentials a controller meets in practice (a bearer token or token file, client
certificates, a CA) are read here without kubernetes-asyncio: importing its config loader imports its
thousands of generated API models, tens of megabytes of resident memory the operator never uses. Only
what needs more (exec plugins, auth providers, basic auth, merged multi-file KUBECONFIGs) raises
`UnsupportedKubeconfig`, and `load_config` then hands the file to kubernetes-asyncio's full loader,
whose refresh hooks the REST client keeps running.
"""

from __future__ import annotations

import atexit
import base64
import logging
import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class Credentials:
    host: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_ssl: bool = True
    tls_server_name: str | None = None
    token: str | None = None
    #: Re-read on use (bound ServiceAccount tokens are rotated by the kubelet).
    token_file: str | None = None
    #: The cluster's `proxy-url` (http or https); HTTPS_PROXY / NO_PROXY apply when it is unset.
    proxy_url: str | None = None


class UnsupportedKubeconfig(Exception):
    """The kubeconfig needs kubernetes-asyncio's loader (exec plugin, auth provider, ...)."""


def _named(items: Any, name: str, kind: str) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            value = item.get(kind)
            return value if isinstance(value, dict) else {}
    raise ValueError(f"kubeconfig has no {kind} named {name!r}")


def _materialise(data_b64: str, directory: Path, name: str) -> str:
    """Write an inline `*-data` field to a private file: ssl only loads client certificates from files."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(base64.b64decode(data_b64))
    path.chmod(0o600)
    return str(path)


def _resolve(base: Path, value: str | None) -> str | None:
    if not value:
        return None
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else base / path)


def load_kubeconfig(path: str, context: str | None = None) -> Credentials:
    """Credentials of one context of one kubeconfig file; UnsupportedKubeconfig when they need more."""
    if os.pathsep in path:
        raise UnsupportedKubeconfig("several kubeconfig files to merge")
    import yaml  # here, not at the top: an in-cluster process never parses YAML

    file = Path(path)
    doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a kubeconfig")
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise ValueError(f"{path} has no current-context and no context was given")
    ctx = _named(doc.get("contexts"), str(ctx_name), "context")
    cluster = _named(doc.get("clusters"), str(ctx.get("cluster")), "cluster")
    user = _named(doc.get("users"), str(ctx.get("user")), "user") if ctx.get("user") else {}
    if user.get("exec") or user.get("auth-provider") or user.get("username") or user.get("password"):
        raise UnsupportedKubeconfig("the user authenticates through a plugin or basic auth")
    if not cluster.get("server"):
        raise ValueError(f"cluster {ctx.get('cluster')!r} in {path} has no server")
    base = file.resolve().parent
    scratch = Path(tempfile.mkdtemp(prefix="dbaasctl-kubeconfig-"))
    atexit.register(shutil.rmtree, scratch, True)
    ca_file = _resolve(base, cluster.get("certificate-authority"))
    if cluster.get("certificate-authority-data"):
        ca_file = _materialise(cluster["certificate-authority-data"], scratch, "ca.crt")
    cert_file = _resolve(base, user.get("client-certificate"))
    if user.get("client-certificate-data"):
        cert_file = _materialise(user["client-certificate-data"], scratch, "client.crt")
    key_file = _resolve(base, user.get("client-key"))
    if user.get("client-key-data"):
        key_file = _materialise(user["client-key-data"], scratch, "client.key")
    return Credentials(
        host=str(cluster["server"]).rstrip("/"),
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        verify_ssl=not bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name"),
        token=user.get("token") or None,
        token_file=_resolve(base, user.get("tokenFile")),
        proxy_url=_proxy_url(cluster.get("proxy-url")),
    )


def _proxy_url(value: Any) -> str | None:
    """An HTTP(S) proxy URL; anything else (socks5) is refused at start-up rather than ignored."""
    if not value:
        return None
    url = str(value)
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"proxy-url {url!r}: only http and https proxies are supported")
    return url


def load_in_cluster(directory: Path = SERVICE_ACCOUNT_DIR) -> Credentials:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise ValueError("KUBERNETES_SERVICE_HOST is not set: not running in a cluster")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    token_file = directory / "token"
    if not token_file.is_file():
        raise ValueError(f"{token_file} does not exist: not running in a cluster")
    ca = directory / "ca.crt"
    return Credentials(
        host=f"https://{host}:{port}",
        ca_file=str(ca) if ca.is_file() else None,
        token_file=str(token_file),
    )


@dataclass
class ClientConfig:
    """What a session needs; built from kubeconfig or in-cluster files by `load_config`."""

    host: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_ssl: bool = True
    tls_server_name: str | None = None
    # kubernetes-asyncio's Configuration, only for credentials our own loader does not read (exec
    # plugins, auth providers): kept for its auth header and refresh hooks.
    kube_configuration: Any = None
    token: str | None = None
    #: A token file re-read on use at most every minute and after a 401 (rotated ServiceAccount tokens).
    token_file: str | None = None
    #: Explicit proxy (kubeconfig `proxy-url`); otherwise HTTPS_PROXY / NO_PROXY from the environment.
    proxy_url: str | None = None
    source: str = ""


def _kubeconfig_path(kubeconfig: str | os.PathLike[str] | None) -> str | None:
    """The kubeconfig to read, or None for in-cluster config (startup only, so blocking is fine)."""
    if kubeconfig is not None:
        return os.fspath(kubeconfig)
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"]
    if os.environ.get("KUBERNETES_SERVICE_HOST") and Path(IN_CLUSTER_TOKEN).is_file():
        return None
    return os.path.expanduser("~/.kube/config")


async def load_config(
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    token: str | None = None,
) -> tuple[ClientConfig, Any]:
    """Resolve config like controller-runtime: explicit path → $KUBECONFIG → in-cluster → ~/.kube/config.

    `token` overrides whatever credentials the config carries (client certs included), e.g. to act as a
    ServiceAccount. Returns the config and the kubeconfig loader (None in-cluster) for token refresh.
    """
    path = _kubeconfig_path(kubeconfig)
    try:
        creds = load_kubeconfig(path, context) if path is not None else load_in_cluster()
    except UnsupportedKubeconfig as exc:
        log.debug("%s: %s; using kubernetes-asyncio's loader", path, exc)
        return await _load_with_kubernetes_asyncio(path, context, token)
    return ClientConfig(
        host=creds.host,
        ca_file=creds.ca_file,
        cert_file=None if token else creds.cert_file,
        key_file=None if token else creds.key_file,
        verify_ssl=creds.verify_ssl,
        tls_server_name=creds.tls_server_name,
        token=token or creds.token,
        token_file=None if token else creds.token_file,
        proxy_url=creds.proxy_url,
        source=f"kubeconfig {path}" if path is not None else "in-cluster",
    ), None


async def _load_with_kubernetes_asyncio(
    path: str | None, context: str | None, token: str | None
) -> tuple[ClientConfig, Any]:
    # Imported only here: it pulls in every generated API model (the cost is in docs/benchmarks.md).
    from kubernetes_asyncio import config as kconfig
    from kubernetes_asyncio.client import Configuration

    cfg = Configuration()
    loader: Any = None
    if path is not None:
        loader = await kconfig.load_kube_config(
            config_file=path, context=context, client_configuration=cfg, persist_config=False
        )
        source = f"kubeconfig {path}"
    else:
        kconfig.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        source = "in-cluster"
    client_config = ClientConfig(
        host=str(cfg.host).rstrip("/"),
        ca_file=cfg.ssl_ca_cert,
        cert_file=None if token else cfg.cert_file,
        key_file=None if token else cfg.key_file,
        verify_ssl=bool(cfg.verify_ssl),
        tls_server_name=cfg.tls_server_name,
        kube_configuration=None if token else cfg,
        token=token,
        proxy_url=_proxy_url(getattr(cfg, "proxy", None)),
        source=source,
    )
    return client_config, loader


def ssl_context(config: ClientConfig) -> ssl.SSLContext | bool:
    if not config.host.startswith("https"):
        return False
    ctx = ssl.create_default_context(cafile=config.ca_file)
    if config.cert_file:
        ctx.load_cert_chain(config.cert_file, keyfile=config.key_file)
    if not config.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
