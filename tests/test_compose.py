"""No Docker engine runs here: check the compose file parses and agrees with the controller."""

from __future__ import annotations

from pathlib import Path

import yaml

from controller.config import Settings

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
    assert settings.nats_urls == ["nats://nats:4222"]
    assert settings.advertise_host == "controller"
