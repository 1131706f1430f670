"""``rediss://`` with ``STREAMREC_REDIS_CA_CERTS``, against a real ``redis-server`` serving
TLS with a certificate of a private authority made for the test (``openssl``)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamrec.errors import RedisUnavailableError
from streamrec.settings import Settings
from streamrec.state.connection import connect
from tests.integration.system_redis import free_port, redis_server, speaks_tls


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def authority(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed authority: (certificate, key)."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
            "-keyout", str(key), "-out", str(cert))  # fmt: skip
    return cert, key


@pytest.fixture
def tls_port(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS-only server on 127.0.0.1 and the authority that signed its certificate."""
    binary = shutil.which("redis-server")
    if binary is None or not speaks_tls(binary) or shutil.which("openssl") is None:
        pytest.skip("needs openssl and a redis-server built with TLS (Debian's is)")
    ca, ca_key = authority(tmp_path, "test-ca")
    key, request, cert = tmp_path / "server.key", tmp_path / "server.csr", tmp_path / "server.pem"
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(request))  # fmt: skip
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "1", "-extfile", str(tmp_path / "san.ext"),
            "-out", str(cert))  # fmt: skip
    port = free_port()
    with redis_server(
        binary, tmp_path, port, "--port", "0", "--tls-port", str(port),
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
    ):  # fmt: skip
        yield port, ca


def test_rediss_with_the_authority_of_the_settings(tls_port: tuple[int, Path]) -> None:
    port, ca = tls_port
    settings = Settings.from_env(
        {"STREAMREC_REDIS_URL": f"rediss://127.0.0.1:{port}/0", "STREAMREC_REDIS_CA_CERTS": str(ca)}
    )
    client = connect(settings)
    client.set("streamrec:tls-probe", "over TLS")
    assert client.get("streamrec:tls-probe") == b"over TLS"
    assert client.connection_pool.connection_kwargs["ssl_ca_certs"] == str(ca)
    client.close()


def test_a_server_of_another_authority_is_refused(
    tls_port: tuple[int, Path], tmp_path: Path
) -> None:
    port, _ = tls_port
    other, _ = authority(tmp_path, "other-ca")
    url = f"rediss://127.0.0.1:{port}/0"
    for settings in (Settings(redis_url=url, redis_ca_certs=other), Settings(redis_url=url)):
        with pytest.raises(RedisUnavailableError, match="certificate verify failed"):
            connect(settings.with_(connect_timeout=2.0))
