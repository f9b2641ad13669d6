"""Controller settings: flags, then MSSP_* environment variables, then defaults.

The data dir holds everything a controller owns on disk:
  controller.db            SQLite store (when no db_url is given)
  controller.json          where the running server listens (read by msspctl for defaults)
  controller.lock          held (flock) by the one controller running on this dir; its pid inside
  listen.json              listener ports of the last start, reused for any listener on port 0
  operator.token           the operator credential, mode 0600
  plans.yaml               billing plans and prices (optional: built-in defaults when absent)
  pki/                     CA, server certificate, push-signing key
  nats/                    NATS operator/account keys, generated nats.conf, JetStream storage
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller.domain.durations import parse_duration
from controller.domain.errors import InvalidInput
from controller.domain.promotion import PromotionPolicy

SYNC_INTERVAL = re.compile(r"always|default|[1-9][0-9]{0,8}(ms|s|m|h)")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mssp"


class PromotionSettings(BaseModel):
    """When sightings promote an indicator (controller/domain/promotion.py); for example
    MSSP_PROMOTION='{"min_tenants": 3, "min_confidence": 70, "scope": "alliance", "ttl": "7d"}'."""

    model_config = {"extra": "forbid"}

    min_tenants: int = Field(default=3, ge=1)
    min_confidence: int = Field(default=70, ge=0, le=100)
    scope: Literal["alliance", "global"] = "alliance"
    ttl: str = "7d"
    require_approval: bool = False
    fast_confidence: int = Field(default=90, ge=0, le=100)  # 0: no fast tier
    k: int = Field(default=3, ge=2)  # tenants see "seen by N organisations" only when N >= k
    false_positive_tenants: int = Field(default=3, ge=1)  # distinct tenants' reports withdraw a promotion
    beacon_score: int = Field(default=90, ge=0, le=100)  # fast tier for one router's beacon (0: off)

    @field_validator("ttl")
    @classmethod
    def _check_ttl(cls, value: str) -> str:
        try:
            parse_duration(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
        return value

    def policy(self) -> PromotionPolicy:
        return PromotionPolicy(self.min_tenants, self.min_confidence, self.scope,
                               int(parse_duration(self.ttl).total_seconds()), self.require_approval,
                               self.fast_confidence, self.k, self.false_positive_tenants, self.beacon_score)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MSSP_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    db_url: str | None = None
    nats_url: str | None = None  # None: start the embedded nats-server child process
    agent_nats_url: str | None = None  # what agents are told to use; default: nats_url / embedded URL
    nats_listen: str = "127.0.0.1:0"  # embedded nats-server; port 0: free port, kept (listen.json)
    # TLS on every broker connection (certificate from our CA; agents pin it). auto: on unless the
    # broker is reached over loopback only (listen address, agent URL, or external URL hosts).
    nats_tls: Literal["auto", "on", "off"] = "auto"
    nats_cert_hosts: list[str] = Field(default_factory=list)  # extra SANs of the broker certificate
    # Broker connections one gateway credential may hold; more are kicked (controller/nats/conn_limit).
    nats_max_connections_per_gateway: int = Field(default=2, ge=1, le=64)
    # JetStream fsync: "always" (before every ack: acked telemetry survives a host crash), a duration
    # such as "10s", or "default" (nats-server's 2 minutes).
    nats_sync_interval: str = "always"
    grpc_listen: str = "127.0.0.1:7443"  # enrollment + operator API (server TLS)
    gateway_listen: str = "127.0.0.1:7444"  # GatewayService (mTLS)
    advertise_host: str | None = None  # host agents use to reach us; default: the listen host
    token_ttl_seconds: int = 24 * 3600
    beacon_interval_seconds: float = 5.0
    online_window_seconds: float = 90.0
    server_cert_hosts: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1", "::1"])
    # Tenant API (FastAPI, served in this process: controller/api/). Non-loopback needs TLS or
    # api_insecure_http; "off" disables it.
    api_listen: str = "127.0.0.1:8080"
    api_tls_cert: Path | None = None
    api_tls_key: Path | None = None
    api_insecure_http: bool = False
    # Prometheus metrics (controller/metrics/) over plain HTTP, HOST:PORT; empty or "off": not served.
    metrics_listen: str = ""
    api_rate_limit: int = Field(default=600, ge=1)  # requests per key per window
    api_rate_window_seconds: int = Field(default=60, ge=1)
    # How long an open month's usage and security report may be served from memory (0: never).
    api_cache_seconds: float = Field(default=30.0, ge=0, le=3600)
    # Load the PDF stack after start-up (in a thread) so a tenant's first report is not ~0.5 s slower;
    # the delay keeps its seconds of imports off the CPU while a restarted fleet reconnects.
    api_warm_reports: bool = True
    api_warm_reports_after_seconds: float = Field(default=30.0, ge=0, le=3600)
    plans_file: Path | None = None  # default: <data dir>/plans.yaml, else the built-in plans
    # Housekeeping (controller/housekeeping.py): each job's period, run once per period across all
    # controllers sharing the database. IOC expiry is frequent: its removal pushes go out at once.
    housekeeping_ioc_expiry_seconds: float = Field(default=1.0, gt=0)
    housekeeping_push_log_seconds: float = Field(default=600.0, gt=0)  # prune the delta log
    housekeeping_telemetry_seconds: float = Field(default=3600.0, gt=0)  # telemetry retention
    housekeeping_tokens_seconds: float = Field(default=3600.0, gt=0)  # delete old enrollment tokens
    housekeeping_feeds_seconds: float = Field(default=30.0, gt=0)  # look for feeds due a refresh
    feed_dir: Path | None = None  # default <data dir>/feeds
    housekeeping_decay_seconds: float = Field(default=3600.0, gt=0)  # withdraw decayed claims
    # MISP's polynomial decay of feed and import claims (controller/domain/decay.py).
    decay_lifetime_days: float = Field(default=120.0, gt=0)
    decay_speed: float = Field(default=2.0, gt=0)
    decay_threshold: int = Field(default=30, ge=0, le=100)
    promotion: PromotionSettings = Field(default_factory=PromotionSettings)
    # The never-block guard's broadest IOC prefixes (a /7 is refused by default).
    ioc_max_prefix_v4: int = Field(default=8, ge=8, le=32)
    ioc_max_prefix_v6: int = Field(default=16, ge=16, le=128)
    # How long past its expiry a token is kept (a late attempt is told "expired", not "unknown").
    enrollment_token_grace_seconds: float = Field(default=7 * 86400.0, ge=0)
    # Gateway client certificates (and their NATS JWTs): agents renew them at 60-70% of this.
    gateway_cert_lifetime_seconds: int = Field(default=397 * 86400, ge=30, le=10 * 365 * 86400)
    # After `signing-key rotate`, how long gateways still accept pushes the old key signed.
    signing_key_overlap_seconds: int = Field(default=7 * 86400, ge=0, le=365 * 86400)

    @field_validator("nats_sync_interval")
    @classmethod
    def _check_sync_interval(cls, value: str) -> str:
        if not SYNC_INTERVAL.fullmatch(value):
            raise ValueError('must be "always", "default" or a duration like "500ms", "10s", "2m"')
        return value

    @property
    def jetstream_sync_interval(self) -> str | None:
        """The nats.conf value, None for the server's default."""
        return None if self.nats_sync_interval == "default" else self.nats_sync_interval

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'controller.db'}"

    @property
    def nats_urls(self) -> list[str]:
        return [u.strip() for u in (self.nats_url or "").split(",") if u.strip()]

    @property
    def plans_path(self) -> Path:
        return self.plans_file or self.data_dir / "plans.yaml"

    @property
    def runtime_file(self) -> Path:
        return self.data_dir / "controller.json"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "controller.lock"

    @property
    def operator_token_file(self) -> Path:
        return self.data_dir / "operator.token"

    @property
    def feeds_dir(self) -> Path:
        """Where path feeds must live (`feed add --path`): the controller reads them with its rights."""
        return self.feed_dir or self.data_dir / "feeds"

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def nats_dir(self) -> Path:
        return self.data_dir / "nats"
