"""Composition root of `msspctl server run`: store, PKI, NATS, gRPC servers and the push publisher."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from nats.aio.client import Client as NatsClient

from controller.api.server import ApiServer, start_api
from controller.ca_announce import CaAnnouncer
from controller.ca_set import CaSet
from controller.config import Settings
from controller.domain.decay import DecayModel
from controller.grpc_api.access import OperatorAccess, token_digest
from controller.grpc_api.enrollment import EnrollmentServicer
from controller.grpc_api.gateway import GatewayServicer, Renewal
from controller.grpc_api.gateway_listener import GatewayListener, bind
from controller.grpc_api.mount import mount_operator_services, provisioner
from controller.grpc_api.operator import OperatorServicer
from controller.grpc_api.signing import KeyRotation
from controller.grpc_api.telemetry import TelemetryServicer
from controller.housekeeping import Housekeeper, controller_jobs
from controller.listen_state import ListenState
from controller.metrics import ControllerMetrics, MetricsServer, serve_metrics
from controller.nats.auth import NatsIdentity
from controller.nats.conn_limit import ConnectionLimiter
from controller.nats.embedded import EmbeddedNats
from controller.nats.revocation import STATE_FILE, RevocationSync
from controller.nats.tls import ClientTls, controller_tls, late_upgrade, settle_external
from controller.push_publisher import PushPublisher
from controller.service import ControllerService
from controller.services.allowlist import GuardSettings
from controller.signing_keys import SigningKeys
from controller.status_recorder import StatusRecorder
from controller.store.db import Database
from controller.store.revoked import nats_revocations
from controller.telemetry.bounds import EnrollmentTimes
from controller.telemetry.consumer import TelemetryConsumer
from mssp.common.dirlock import DirLock, lock_dir
from mssp.common.files import write_private
from mssp.v1 import (
    enrollment_pb2_grpc,
    gateway_pb2_grpc,
    operator_pb2_grpc,
    telemetry_pb2_grpc,
)

log = logging.getLogger("mssp.controller")

GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    # gRPC sets SO_REUSEPORT by default: a second server on our port would bind too and take
    # calls at random (wrong CA, wrong data). A port in use must refuse instead.
    ("grpc.so_reuseport", 0),
]


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def load_or_create_operator_token(path: Path) -> str:
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = "mssp_op_" + secrets.token_urlsafe(32)
    write_private(path, (token + "\n").encode())
    return token


class ControllerApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db: Database | None = None
        self.service: ControllerService | None = None
        self.embedded_nats: EmbeddedNats | None = None
        self.nc: NatsClient | None = None
        self.publisher: PushPublisher | None = None
        self.status_recorder: StatusRecorder | None = None
        self.telemetry: TelemetryConsumer | None = None
        self.gateway_executor: ThreadPoolExecutor | None = None
        self.servers: list[grpc.aio.Server] = []
        self.gateway_listener: GatewayListener | None = None
        self.api: ApiServer | None = None  # the tenant API (controller/api/), None when off
        self.metrics = ControllerMetrics()  # this controller's own registry (never the global one)
        self.metrics_server: MetricsServer | None = None  # /metrics (metrics_listen), None when off
        self.grpc_address = ""
        self.gateway_address = ""
        self.nats_urls: list[str] = []
        self.nats_tls: ClientTls | None = None
        self.revocations: RevocationSync | None = None
        self.conn_limit: ConnectionLimiter | None = None
        self.housekeeper: Housekeeper | None = None
        self.ca_announcer: CaAnnouncer | None = None
        self.listen = ListenState(settings.data_dir)  # ports kept across restarts (listen.json)
        self.lock: DirLock | None = None
        self.wrote_runtime_file = False

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # One controller per data dir: a second one would share the database, keys and controller.json.
        self.lock = lock_dir(s.data_dir, holder="controller", name=s.lock_file.name)
        self.listen.load()
        self.db = Database(s.database_url)
        await asyncio.to_thread(self.db.upgrade)
        self.service = ControllerService(
            self.db, token_ttl_seconds=s.token_ttl_seconds, online_window_seconds=s.online_window_seconds,
            plans_path=s.plans_path, read_cache_seconds=s.api_cache_seconds,
            decay=DecayModel(s.decay_lifetime_days, s.decay_speed, s.decay_threshold), feed_dir=s.feeds_dir,
            promotion=s.promotion.policy(),
        )
        await asyncio.to_thread(self.service.billing.plan_book)  # a malformed plans file stops start-up
        ca = await asyncio.to_thread(CaSet.load_or_create, s.pki_dir)  # finishes an ended CA rollover
        signing_key = await asyncio.to_thread(SigningKeys.load_or_create, s.pki_dir)
        self.identity = await asyncio.to_thread(NatsIdentity.load_or_create, s.nats_dir)
        token = await asyncio.to_thread(load_or_create_operator_token, s.operator_token_file)
        operator_digest = token_digest(token)
        db = self.db
        self.revocations = RevocationSync(
            self.identity, lambda: nats_revocations(db), self.nats_connect_kwargs,
            s.nats_dir / "system.creds", state_file=s.nats_dir / STATE_FILE,
        )
        await self._start_nats(ca)
        assert self.nc is not None

        grpc_host, grpc_port = _split(s.grpc_listen)
        gw_host, gw_port = _split(s.gateway_listen)
        grpc_port, gw_port = self.listen.port("grpc", grpc_port), self.listen.port("gateway", gw_port)
        advertise = s.advertise_host or (gw_host if gw_host not in ("0.0.0.0", "::") else "127.0.0.1")
        hosts = list(dict.fromkeys([*s.server_cert_hosts, advertise]))
        key_pem, chain_pem = await asyncio.to_thread(ca.server_credentials, s.pki_dir, hosts)

        self.publisher = PushPublisher(
            self.service, self.nc, signing_key, beacon_interval=s.beacon_interval_seconds,
            metrics=self.metrics,
        )
        # Enrollment + operator API: server-authenticated TLS (agents have no certificate yet).
        # Every operator service behind one door: credential, role, who acts, and the audit log.
        access = OperatorAccess(self.service, operator_digest)
        api = grpc.aio.server(options=GRPC_OPTIONS,
                              interceptors=[self.metrics.grpc_interceptor("api"), access])  # errors first
        api_creds = grpc.ssl_server_credentials([(key_pem, chain_pem)])
        self.servers.append(api)  # stop() stops it even when the next bind fails
        bound_api = bind(api, f"{grpc_host}:{grpc_port}", api_creds,
                         self.listen.what("grpc", "enrollment + operator API"))
        # Gateway API: mutual TLS, client certificates from our CA only.
        self.gateway_listener = GatewayListener(  # both CAs during a rollover (ca_set.py)
            gw_host, ca, key_pem, chain_pem, what=self.listen.what("gateway", "gateway API"),
            options=GRPC_OPTIONS, interceptors=[self.metrics.grpc_interceptor("gateway")])
        bound_gw = self.gateway_listener.bind(gw_port)
        self.listen.record("grpc", bound_api)
        self.listen.record("gateway", bound_gw)
        self.grpc_address = f"{_display_host(grpc_host)}:{bound_api}"
        self.gateway_address = f"{advertise}:{bound_gw}"
        own = {advertise, *s.server_cert_hosts, *(urlsplit(u).hostname or "" for u in self.nats_urls)}
        self.service.set_guard(GuardSettings(s.ioc_max_prefix_v4, s.ioc_max_prefix_v6,
                                             tuple(sorted(h for h in own if h))))

        lifetime = dt.timedelta(seconds=s.gateway_cert_lifetime_seconds)
        enrollment_pb2_grpc.add_EnrollmentServiceServicer_to_server(
            EnrollmentServicer(
                self.service, ca, signing_key,
                gateway_endpoint=self.gateway_address,
                nats_urls=self._agent_nats_urls(),
                mint_gateway_jwt=self.identity.gateway_user_jwt, cert_lifetime=lifetime,
            ),
            api,
        )
        operator_pb2_grpc.add_OperatorServiceServicer_to_server(
            OperatorServicer(
                self.service, ca, operator_digest,
                on_change=self.publisher.wake, on_revoke=self.revoke_nats_user,
                on_ca_change=self.gateway_listener.reload,
                rotation=KeyRotation(signing_key, self.publisher.announce_keys,
                                     s.signing_key_overlap_seconds, self.service.gateways.unable_to_rotate),
            ),
            api,
        )
        runs = provisioner(self.service, ca, s.data_dir, f"{advertise}:{bound_api}", self.grpc_address)
        mount_operator_services(api, self.service, operator_digest, on_change=self.publisher.wake,
                                on_revoke=self.revoke_nats_user, provisioning=runs)
        self.gateway_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gateway-api")
        self.status_recorder = StatusRecorder(self.service, self.gateway_executor)
        self.telemetry = TelemetryConsumer(self.db, self.nc, thresholds_of=self.service.upload_thresholds,
                                           enrolled_at=EnrollmentTimes(self.db),
                                           on_sightings=self._folded_sightings)
        await self.telemetry.start()  # stream + durable consumer, created idempotently
        service = self.service
        telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(
            TelemetryServicer(
                self.db, operator_digest,
                resolve_tenant=service.tenant_id,
                tenant_names=service.tenant_names,
                gateway_names=service.gateway_names,
            ),
            api,
        )
        gateways = GatewayServicer(self.service, signing_key, self.gateway_executor, self.status_recorder,
                                   nats_urls=self._agent_nats_urls,
                                   mint_gateway_jwt=self.identity.gateway_user_jwt,
                                   on_change=self.publisher.wake,
                                   renewal=Renewal(ca, lifetime, self.revoke_nats_user), metrics=self.metrics)

        async def serve_gateways(server: grpc.aio.Server) -> None:
            gateway_pb2_grpc.add_GatewayServiceServicer_to_server(gateways, server)
            await _serve_health(server)

        await _serve_health(api)
        await api.start()
        listener = self.gateway_listener
        await listener.start(serve_gateways)
        self.api = await start_api(s, self.service, self.listen)
        self.metrics_server = await serve_metrics(s.metrics_listen, self.metrics, self.service.fleet_status,
                                                  self.telemetry, self.listen)
        self.publisher.start()
        self.ca_announcer = CaAnnouncer(ca, signing_key, self.publisher.announce_keys,  # ca_announce.py
                                        served=lambda: listener.generation)
        self.ca_announcer.start()
        self.status_recorder.start()
        self.publisher.wake()  # anything committed but unpublished before a crash
        self.housekeeper = Housekeeper(self.db, controller_jobs(self.service, self.db, s,
                                                                on_iocs_expired=self.publisher.wake))
        await self.housekeeper.start()
        await asyncio.to_thread(self.listen.save)
        await asyncio.to_thread(self._write_runtime_file)
        log.info("controller up: api %s, gateways %s, nats %s", self.grpc_address, self.gateway_address,
                 ",".join(self.nats_urls))

    async def _start_nats(self, ca: CaSet) -> None:
        s = self.settings
        self.nats_tls, broker_tls = await asyncio.to_thread(controller_tls, s, ca)
        if s.nats_url:  # an external broker: agree with what it actually speaks
            self.nats_tls = await settle_external(self.nats_tls, s.nats_tls, s.nats_urls)
            self.nats_urls = self.nats_tls.urls(s.nats_urls)
        else:
            host, port = _split(s.nats_listen)
            # Revoked gateways stay out after a restart: the preloaded account JWT carries them.
            revocations = await asyncio.to_thread(self.revocations.desired)
            self.embedded_nats = EmbeddedNats(self.identity, s.nats_dir, host=host,
                                              port=self.listen.port("nats", port), movable=not port,
                                              revocations=revocations, tls=broker_tls,
                                              sync_interval=s.jetstream_sync_interval)
            self.nats_urls = [await self.embedded_nats.start()]
            self.listen.record("nats", self.embedded_nats.port)
        creds = s.nats_dir / "controller.creds"
        await asyncio.to_thread(write_private, creds, self.identity.controller_creds().encode())
        nc = NatsClient()
        upgrade = late_upgrade(self.nats_tls, s.nats_tls if s.nats_url else "off", self.nats_urls,
                               self._tls_upgraded)

        async def on_error(exc: Exception) -> None:
            log.warning("NATS error: %s", exc)
            await upgrade.on_error(nc, exc)

        await nc.connect(
            **self.nats_connect_kwargs(),
            error_cb=on_error,
            user_credentials=str(creds),
            name="mssp-controller",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
        )
        self.nc = nc
        # The database's revocations reach the broker now (an external one may have missed them
        # while we were down) and stay there: reconciled every period, retried until confirmed.
        sys_creds = s.nats_dir / "system.creds"
        await asyncio.to_thread(write_private, sys_creds, self.identity.system_creds().encode())
        assert self.revocations is not None
        await self.revocations.start()
        # One gateway credential holds at most a few connections (the subs cap is per connection).
        self.conn_limit = ConnectionLimiter(
            self.identity.account_public_key, {self.identity.controller_user.public_key.decode()},
            self.nats_connect_kwargs, sys_creds, max_per_user=s.nats_max_connections_per_gateway,
        )
        await self.conn_limit.start()

    def _tls_upgraded(self) -> None:
        """Our connection moved to tls://: every connection opened from now on does too."""
        assert self.nats_tls is not None
        self.nats_tls = ClientTls(enabled=True, ca_pem=self.nats_tls.ca_pem)
        self.nats_urls = self.nats_tls.urls(self.nats_urls)

    def nats_connect_kwargs(self) -> dict[str, Any]:
        """servers= plus TLS options (pinned to our CA) for every broker connection we open."""
        assert self.nats_tls is not None, "NATS not started"
        return self.nats_tls.connect_kwargs(self.nats_urls)

    def _agent_nats_urls(self) -> list[str]:
        assert self.nats_tls is not None
        return self.nats_tls.urls([self.settings.agent_nats_url] if self.settings.agent_nats_url
                                  else self.nats_urls)

    def _folded_sightings(self, folded: list[tuple[str, str, str, str, str, int, int]]) -> None:
        assert self.service is not None and self.publisher is not None
        if self.service.sightings.record_folded(folded).promoted:
            self.publisher.wake_threadsafe()

    async def revoke_nats_user(self, public_key: str) -> None:
        """Cut a revoked gateway (committed in the database already) off the broker now; if the
        broker does not confirm, the reconcile loop keeps pushing until it does."""
        assert self.revocations is not None
        if not await self.revocations.revoked():
            log.error("NATS user %s is revoked in the database but not yet at the broker; retrying",
                      public_key)

    def _write_runtime_file(self) -> None:
        info = {
            "grpc": self.grpc_address,
            "gateway": self.gateway_address,
            "nats_urls": self.nats_urls,
            "api": self.api.url if self.api is not None else "",
            "metrics": self.metrics_server.url if self.metrics_server is not None else "",
            "pid": os.getpid(),
        }
        tmp = self.settings.runtime_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2))
        os.replace(tmp, self.settings.runtime_file)
        self.wrote_runtime_file = True

    async def stop(self) -> None:
        if self.metrics_server is not None:  # first: a scrape reads the store and the consumer
            await self.metrics_server.stop()
            self.metrics_server = None
        if self.housekeeper is not None:
            await self.housekeeper.stop()
        if self.ca_announcer is not None:
            await self.ca_announcer.stop()
        if self.publisher is not None:
            await self.publisher.stop()
        if self.api is not None:
            await self.api.stop()
            self.api = None
        for server in self.servers:
            await server.stop(grace=1.0)
        self.servers = []
        if self.gateway_listener is not None:
            await self.gateway_listener.stop()
        if self.status_recorder is not None:
            await self.status_recorder.stop()
        if self.gateway_executor is not None:
            self.gateway_executor.shutdown(wait=True)
        if self.telemetry is not None:
            await self.telemetry.stop()
        if self.revocations is not None:
            await self.revocations.stop()
        if self.conn_limit is not None:
            await self.conn_limit.stop()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self.embedded_nats is not None:
            await self.embedded_nats.stop()
        if self.db is not None:
            self.db.dispose()
        if self.wrote_runtime_file:  # never another controller's (a refused second start wrote none)
            self.wrote_runtime_file = False
            with contextlib.suppress(FileNotFoundError):
                self.settings.runtime_file.unlink()
        if self.lock is not None:
            self.lock.release()
            self.lock = None


async def _serve_health(server: grpc.aio.Server) -> None:
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
