"""Server and broker certificate files survive a crash: written whole or not at all, and a torn file
or a key that is not the certificate's is re-issued at start instead of stopping it (real files,
real cryptography, real OpenSSL and a real controller restart)."""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controller.pki import CertificateAuthority
from gateway_agent.enroll import enroll
from mssp.common import files
from mssp.common.files import write_atomic
from tests.support.fleet import controller_settings, start_controller

HOSTS = ["127.0.0.1", "localhost"]


def foreign_key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def assert_loadable(key_path: Path, cert_path: Path) -> None:
    """OpenSSL itself takes the pair (it refuses a key that is not the certificate's)."""
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_path, key_path)


def test_torn_or_mismatched_server_and_broker_files_are_reissued(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "pki")
    d = tmp_path / "pki"
    for stem, issue in (("server", ca.server_credentials), ("nats-server", ca.broker_credentials)):
        key_path, cert_path = d / f"{stem}.key", d / f"{stem}.crt"
        issue(d, HOSTS)
        kept = key_path.read_bytes(), cert_path.read_bytes()
        issue(d, HOSTS)
        assert (key_path.read_bytes(), cert_path.read_bytes()) == kept  # a sound pair is kept as it is

        # A new key replaced, the crash came before its certificate: a mismatched pair.
        key_path.write_bytes(foreign_key_pem())
        with caplog.at_level(logging.WARNING, logger="controller.pki"):
            issue(d, HOSTS)
        assert "does not match" in caplog.text
        assert_loadable(key_path, cert_path)

        # A torn certificate (cut mid-block), then one cut between the certificate and the CA.
        whole = cert_path.read_bytes()
        for torn in (whole[: len(whole) // 4], whole[: whole.index(b"-----END CERTIFICATE-----") + 26]):
            cert_path.write_bytes(torn)
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="controller.pki"):
                issue(d, HOSTS)
            assert f"re-issuing the {stem} certificate" in caplog.text
            assert_loadable(key_path, cert_path)
            assert cert_path.read_bytes().endswith(ca.cert_pem)

        # A torn key.
        key_path.write_bytes(key_path.read_bytes()[:40])
        issue(d, HOSTS)
        assert_loadable(key_path, cert_path)
        assert oct(key_path.stat().st_mode & 0o777) == "0o600"


def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "server.crt"
    write_atomic(target, b"old certificate")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, b"new certificate that never makes it")
    assert target.read_bytes() == b"old certificate"
    assert os.listdir(tmp_path) == ["server.crt"]  # no temp file left behind


def test_a_damaged_ca_is_an_error_not_a_new_ca(tmp_path: Path) -> None:
    """Enrolled gateways pin the CA: it is never silently replaced."""
    CertificateAuthority.load_or_create(tmp_path)
    (tmp_path / "ca.key").write_bytes(foreign_key_pem())
    with pytest.raises(RuntimeError, match="is not the key of the CA certificate"):
        CertificateAuthority.load_or_create(tmp_path)
    (tmp_path / "ca.crt").write_bytes((tmp_path / "ca.crt").read_bytes()[:100])
    with pytest.raises(RuntimeError, match="does not load"):
        CertificateAuthority.load_or_create(tmp_path)


async def test_the_controller_starts_after_a_crash_tore_its_server_certificate(tmp_path: Path) -> None:
    settings = controller_settings(tmp_path)
    ctl = await start_controller(settings, tmp_path)
    await ctl.op.close()
    await ctl.app.stop()
    pki_dir = settings.pki_dir
    (pki_dir / "server.key").write_bytes(foreign_key_pem())  # the crash: new key, old certificate...
    cert = pki_dir / "server.crt"
    cert.write_bytes(cert.read_bytes()[:300])  # ...and the certificate write torn as well
    ctl = await start_controller(settings, tmp_path)
    try:
        assert_loadable(pki_dir / "server.key", cert)
        await ctl.op.create_tenant("acme")
        token = await ctl.op.add_gateway("acme", "gw0")
        identity = await enroll(ctl.op.address, token, tmp_path / "agent")  # TLS with the new pair
        assert identity.label == "acme/gw0"
    finally:
        await ctl.op.close()
        await ctl.app.stop()
