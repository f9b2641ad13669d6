"""CA rollover, the parts around the fleet: the controller's CA files (a crash at every step of a
rollover and of its finish), the agent's trust (a torn, foreign or malformed bundle never replaces
it; a bundle that shares a CA with it does), and `msspctl ca show` / `ca rollover` against a real
controller (bad input changes nothing, `-o json` numbers are numbers)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controller.ca_set import MANIFEST, NEXT, PREVIOUS_CERT, CaSet
from controller.domain.errors import Conflict, InvalidInput
from controller.pki import CertificateAuthority
from gateway_agent.catrust import TrustRefused, adopt, fingerprint, on_replaced_ca, parse_bundle
from gateway_agent.identity import make_tls_key_and_csr
from mssp.common.clock import now_ms
from mssp.v1 import gateway_pb2
from tests.support.controller_proc import ControllerProc
from tests.test_cli import as_json, assert_failed, assert_ok

LATER = now_ms() + 10 * 365 * 86400 * 1000  # a start far past any overlap here


def test_rollover_files_survive_a_crash_at_every_step(tmp_path: Path) -> None:
    cas = CaSet.load_or_create(tmp_path)
    first = cas.fingerprint
    with pytest.raises(InvalidInput, match="overlap"):
        cas.begin_rollover(0)
    assert CaSet.of(cas) is cas and CaSet.of(cas.current).directory is None
    with pytest.raises(Conflict, match="not kept on disk"):
        CaSet.of(cas.current).begin_rollover(60)

    # A crash before the manifest was written: the next CA's files are dropped, nothing changed.
    CertificateAuthority.load_or_create(tmp_path, NEXT)
    again = CaSet.load_or_create(tmp_path)
    assert again.fingerprint == first and again.next is None and not (tmp_path / f"{NEXT}.key").exists()

    # Committed: both trusted, the next one signs, the current one still issues server certificates.
    rollover = again.begin_rollover(60)
    with pytest.raises(Conflict, match="under way"):
        again.begin_rollover(60)
    resumed = CaSet.load_or_create(tmp_path)
    assert resumed.next is not None and resumed.next.fingerprint == rollover.next_fingerprint
    assert resumed.signer.fingerprint == rollover.next_fingerprint and resumed.fingerprint == first
    assert parse_bundle(resumed.bundle_pem)[1].subject != parse_bundle(resumed.bundle_pem)[0].subject
    assert (tmp_path / f"{NEXT}.key").stat().st_mode & 0o077 == 0

    # The first start past the overlap finishes it; the old private key is gone.
    done = CaSet.load_or_create(tmp_path, now=LATER)
    assert done.fingerprint == rollover.next_fingerprint and done.next is None and done.rollover is None
    assert done.previous is not None and fingerprint(done.previous) == first and done.finished_at_ms
    assert not (tmp_path / f"{NEXT}.key").exists() and not (tmp_path / f"{NEXT}.crt").exists()
    assert CaSet.load_or_create(tmp_path).fingerprint == rollover.next_fingerprint

    # A crash in a finish after the key moved, before the certificate did: the next start completes it.
    second = done.begin_rollover(60)
    (tmp_path / PREVIOUS_CERT).write_bytes(done.cert_pem)
    os.replace(tmp_path / f"{NEXT}.key", tmp_path / "ca.key")
    with pytest.raises(RuntimeError):  # the pair does not match: nothing may load it as it is
        CertificateAuthority.load_or_create(tmp_path)
    healed = CaSet.load_or_create(tmp_path)
    assert healed.fingerprint == second.next_fingerprint and healed.next is None
    assert healed.previous is not None and fingerprint(healed.previous) == rollover.next_fingerprint

    # A lost next key is damage, not a finish: refused loudly.
    third = healed.begin_rollover(60)
    (tmp_path / f"{NEXT}.key").unlink()
    with pytest.raises(RuntimeError, match="damaged"):
        CaSet.load_or_create(tmp_path)
    assert third.next_fingerprint and (tmp_path / MANIFEST).exists()


def _leaf(ca: CertificateAuthority) -> bytes:
    _, csr = make_tls_key_and_csr()
    return ca.sign_gateway_csr(csr, tenant_id="t", gateway_id="g", validity=dt.timedelta(days=1)).cert_pem


def _not_a_ca() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plain")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_agent_takes_only_a_bundle_that_shares_a_ca_with_its_trust(tmp_path: Path) -> None:
    ca1, ca2, stranger = (CertificateAuthority.load_or_create(tmp_path, stem) for stem in ("a", "b", "c"))
    ca_path, cert_path = tmp_path / "ca.crt", tmp_path / "tls.crt"
    ca_path.write_bytes(ca1.cert_pem)
    cert_path.write_bytes(_leaf(ca1))

    def answer(pem: bytes, issuing: CertificateAuthority = ca2) -> gateway_pb2.CaTrust:
        return gateway_pb2.CaTrust(bundle_pem=pem, issuing_fingerprint=issuing.fingerprint)

    both = ca1.cert_pem + ca2.cert_pem
    refused = {
        "torn": answer(both[: len(both) - 40]),
        "garbage": answer(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"),
        "empty": answer(b""),
        "a stranger only": answer(stranger.cert_pem, stranger),
        "the new CA only": answer(ca2.cert_pem),  # shares nothing with what is trusted now
        "issuer not listed": answer(both, stranger),
        "not a CA": answer(ca1.cert_pem + _not_a_ca()),
        "a gateway certificate": answer(ca1.cert_pem + _leaf(ca2)),
        "too many": answer(both * 3),
    }
    for why, bad in refused.items():
        with pytest.raises(TrustRefused):
            adopt(ca_path, bad)
        assert ca_path.read_bytes() == ca1.cert_pem, why
    assert not on_replaced_ca(cert_path, ca_path, ca2.fingerprint)  # the new CA is not trusted yet

    assert adopt(ca_path, answer(both)) is True
    assert [fingerprint(c) for c in parse_bundle(ca_path.read_bytes())] == [ca1.fingerprint, ca2.fingerprint]
    assert adopt(ca_path, answer(ca2.cert_pem + ca1.cert_pem)) is False  # the same CAs
    assert on_replaced_ca(cert_path, ca_path, ca2.fingerprint)  # ours is the old CA's: renew now
    assert not on_replaced_ca(cert_path, ca_path, ca1.fingerprint)
    assert not on_replaced_ca(cert_path, ca_path, "")
    cert_path.write_bytes(_leaf(ca2))
    assert not on_replaced_ca(cert_path, ca_path, ca2.fingerprint)

    assert adopt(ca_path, answer(ca2.cert_pem)) is True  # the finish: the old CA dropped
    assert ca_path.read_bytes() == ca2.cert_pem


def test_ca_show_and_rollover_through_the_cli(controller_proc: ControllerProc) -> None:
    run = controller_proc.run
    first = as_json(run("ca", "show", "-o", "json"))
    assert isinstance(first, dict) and len(first["current"]["fingerprint"]) == 64
    assert isinstance(first["current"]["not_after_ms"], int) and "next" not in first
    for bad in ("soon", "0s", "-5m"):
        assert_failed(run("ca", "rollover", "--overlap", bad), "--overlap")
    assert as_json(run("ca", "show", "-o", "json")) == first

    rolled = run("ca", "rollover", "--overlap", "1h")
    assert_ok(rolled)
    assert "signs gateway certificates now" in rolled.stdout
    shown = as_json(run("ca", "show", "-o", "json"))
    assert isinstance(shown, dict) and shown["current"] == first["current"]
    assert shown["next"]["fingerprint"] != first["current"]["fingerprint"]
    assert 3500_000 < shown["overlap_ends_ms"] - now_ms() <= 3600_000
    assert_failed(run("ca", "rollover"), "under way")
    table = run("ca", "show")
    assert_ok(table)
    assert shown["next"]["fingerprint"] in table.stdout and "overlap ends" in table.stdout
