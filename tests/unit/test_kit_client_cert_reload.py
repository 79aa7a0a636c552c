"""Client certificates are reloaded when their files change: real TLS with client authentication on
loopback, the server answering with the identity each connection presented."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dbaasctl.kube import clientcert
from dbaasctl.kube.config import ClientConfig
from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.rest import KubeClient


@dataclass
class Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def issue(self, cn: str, *, server: bool = False) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        cert = builder.sign(self.key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem


def make_ca() -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Ca(key, cert)


@dataclass
class Server:
    url: str
    ca_file: Path
    ca: Ca
    #: Identities the server answers 401 for, as an API server does for a revoked or unknown one.
    rejected: set[str]
    connections: set[int]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    ca = make_ca()
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    cert, key = ca.issue("127.0.0.1", server=True)
    (tmp_path / "server.crt").write_bytes(cert)
    (tmp_path / "server.key").write_bytes(key)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca_file))
    tls.verify_mode = ssl.CERT_REQUIRED
    tls.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    state = Server("", ca_file, ca, set(), set())

    async def whoami(request: web.Request) -> web.Response:
        assert request.transport is not None
        peer = request.transport.get_extra_info("peercert")
        cn = next(value for rdn in peer["subject"] for key, value in rdn if key == "commonName")
        state.connections.add(id(request.transport))
        if cn in state.rejected:
            return web.json_response({"kind": "Status", "code": 401, "reason": "Unauthorized"}, status=401)
        return web.json_response({"user": cn})

    app = web.Application()
    app.router.add_get("/whoami", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"https://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


def install(server: Server, directory: Path, cn: str) -> tuple[Path, Path]:
    """Write a client pair the way a rotation does: each file replaced by a rename."""
    cert, key = server.ca.issue(cn)
    for name, data in (("client.crt", cert), ("client.key", key)):
        scratch = directory / f".{name}.new"
        scratch.write_bytes(data)
        scratch.replace(directory / name)
    return directory / "client.crt", directory / "client.key"


async def test_a_rotated_client_certificate_is_used_once_its_files_change(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clientcert, "CERT_CHECK_INTERVAL", 0.0)
    cert, key = install(server, tmp_path, "operator-1")
    config = ClientConfig(
        host=server.url, ca_file=str(server.ca_file), cert_file=str(cert), key_file=str(key)
    )
    async with KubeClient(config) as client:
        assert (await client.get("/whoami"))["user"] == "operator-1"
        install(server, tmp_path, "operator-2")
        assert (await client.get("/whoami"))["user"] == "operator-2"
        assert (await client.get("/whoami"))["user"] == "operator-2"


async def test_a_401_reloads_the_client_certificate_and_retries_on_a_new_connection(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clientcert, "CERT_CHECK_INTERVAL", 3600.0)  # only the 401 can trigger a reload
    cert, key = install(server, tmp_path, "operator-1")
    config = ClientConfig(
        host=server.url, ca_file=str(server.ca_file), cert_file=str(cert), key_file=str(key)
    )
    async with KubeClient(config) as client:
        assert (await client.get("/whoami"))["user"] == "operator-1"
        install(server, tmp_path, "operator-2")
        server.rejected.add("operator-1")
        assert (await client.get("/whoami"))["user"] == "operator-2"
        assert len(server.connections) == 2


async def test_a_half_written_pair_keeps_the_certificate_in_use(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clientcert, "CERT_CHECK_INTERVAL", 0.0)
    cert, key = install(server, tmp_path, "operator-1")
    config = ClientConfig(
        host=server.url, ca_file=str(server.ca_file), cert_file=str(cert), key_file=str(key)
    )
    async with KubeClient(config) as client:
        assert (await client.get("/whoami"))["user"] == "operator-1"
        new_cert, _ = server.ca.issue("operator-2")
        cert.write_bytes(new_cert)  # the key is not replaced yet: the pair does not match
        assert (await client.get("/whoami"))["user"] == "operator-1"
        install(server, tmp_path, "operator-2")
        assert (await client.get("/whoami"))["user"] == "operator-2"


async def test_without_a_valid_replacement_a_401_is_reported(server: Server, tmp_path: Path) -> None:
    cert, key = install(server, tmp_path, "operator-1")
    server.rejected.add("operator-1")
    config = ClientConfig(
        host=server.url, ca_file=str(server.ca_file), cert_file=str(cert), key_file=str(key)
    )
    async with KubeClient(config) as client:
        with pytest.raises(ApiError) as info:
            await client.get("/whoami")
    assert info.value.is_unauthorized
