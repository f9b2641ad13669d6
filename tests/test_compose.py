"""No Docker engine runs here: check the compose file parses and agrees with the controller."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from cryptography import x509

from controller.config import Settings
from controller.nats.embedded import nats_server_binary

ROOT = Path(__file__).resolve().parent.parent


def load() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_production_shape() -> None:
    services = load()["services"]
    assert {"postgres", "nats", "controller", "gateway-1", "gateway-2"} <= set(services)
    for gw in ("gateway-1", "gateway-2"):
        assert "NET_ADMIN" in services[gw]["cap_add"]
    assert "-c" in services["nats"]["command"]  # runs from the generated JWT config, not open
    assert (ROOT / "Dockerfile").exists()
    assert (ROOT / "docker" / "gateway-entrypoint.sh").exists()


def test_controller_environment_names_are_real_settings() -> None:
    compose = load()
    fields = {name.upper() for name in Settings.model_fields}
    for name in ("controller", "controller-init"):
        env = compose["services"][name]["environment"]
        for key in env:
            assert key.startswith("MSSP_"), key
            assert key.removeprefix("MSSP_") in fields, f"{key} is not a controller setting"
    env = compose["services"]["controller"]["environment"]
    settings = Settings(**{k.removeprefix("MSSP_").lower(): v for k, v in env.items()})
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.nats_urls == ["tls://nats:4222"]  # the controller verifies the broker (issue 7, 12)
    assert settings.nats_tls == "on"
    assert settings.advertise_host == "controller"


def test_compose_nats_config_does_tls_and_syncs_every_write(tmp_path: Path) -> None:
    """Run controller-init's own command (paths moved into tmp) and check what nats-server gets:
    a TLS block with a certificate for "nats" from the controller's CA, and sync_interval always.
    `nats-server -t` parses it as the compose broker would (no port is opened)."""
    services = load()["services"]
    init = services["controller-init"]
    script = init["command"][-1]
    assert "/nats/nats.conf" in services["nats"]["command"][-1]
    msspctl = script.split(">")[0].split()
    assert msspctl[:3] == ["msspctl", "nats", "config"]
    args = [a.replace("/nats/", f"{tmp_path}/nats/") for a in msspctl[3:]]
    env = {**os.environ, **{k: str(v) for k, v in init["environment"].items()},
           "MSSP_DATA_DIR": str(tmp_path / "data")}
    msspctl_bin = Path(sys.executable).parent / "msspctl"
    out = subprocess.run([str(msspctl_bin), "nats", "config", *args], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    jetstream = out.split("jetstream: {", 1)[1].split("}", 1)[0]
    assert "sync_interval: always" in jetstream
    tls = out.split("tls: {", 1)[1].split("}", 1)[0]
    assert "handshake_first: true" in tls
    cert_file = tmp_path / "nats" / "tls" / "nats-server.crt"
    assert f'cert_file: "{cert_file}"' in tls
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    ca = x509.load_pem_x509_certificate((tmp_path / "data" / "pki" / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)  # the CA agents pin at enrollment
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "nats" in san.get_values_for_type(x509.DNSName)
    conf = tmp_path / "nats.conf"
    conf.write_text(out)
    check = subprocess.run([nats_server_binary(), "-t", "-c", str(conf)], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stderr + check.stdout
