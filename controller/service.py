"""The controller's use cases: tenants, gateways, enrollment, policy, IOCs, fleet state and pushes.

Transport-free (gRPC servicers call it from a thread). Every change that alters what gateways
enforce commits, in the same transaction, the versioned push that carries it (the outbox): a
change is either stored and on its way to every gateway, or not made at all.

Channel seqs are allocated by an UPDATE on the channel row, which serializes writers on both
SQLite and PostgreSQL, so seqs are dense and several controllers may share one database.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, func, update
from sqlmodel import Session, col, select

from controller import enrollment, refusals, resync
from controller.domain.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from controller.domain.ioc import (
    DEFAULT_CONFIDENCE,
    GLOBAL_SCOPE,
    Scope,
    parse_ioc,
    parse_scope,
    to_proto,
    validate_confidence,
    validate_source,
)
from controller.domain.names import validate_gateway_name, validate_plan, validate_tenant_name
from controller.domain.policy import DEFAULT_POLICY_YAML, parse_policy_yaml, policy_to_bundle
from controller.enrollment import EnrollmentTicket, hash_token
from controller.store.db import Database
from controller.store.models import Channel, EnrollmentToken, Gateway, Ioc, PushLog, Tenant
from mssp.common.channels import GLOBAL_CHANNEL, tenant_channel
from mssp.common.clock import now_ms
from mssp.common.limits import MAX_TTL_SECONDS
from mssp.v1 import common_pb2, operator_pb2, push_pb2

TOKEN_PREFIX = "mssp_enr_"
# Deltas kept for resyncs; an agent further behind gets a snapshot instead.
PUSH_LOG_KEEP = 20_000


@dataclass(frozen=True)
class StatusUpdate:
    gateway_id: str
    applied: common_pb2.Versions
    agent_version: str
    backend: str
    last_error: str
    seen_at_ms: int
    refusals: tuple[tuple[str, str, str], ...] = ()  # (kind, value, reason), see controller/refusals.py
    refusals_total: int = 0


@dataclass(frozen=True)
class GatewayIdentity:
    gateway_id: str
    tenant_id: str


def _new_id() -> str:
    return uuid.uuid4().hex


class ControllerService:
    def __init__(
        self, db: Database, *, token_ttl_seconds: int = 24 * 3600, online_window_seconds: float = 90.0
    ) -> None:
        self.db = db
        self.token_ttl_seconds = token_ttl_seconds
        self.online_window_ms = int(online_window_seconds * 1000)

    # -- tenants -------------------------------------------------------------------------------

    def create_tenant(self, name: str, plan: str | None = None) -> operator_pb2.Tenant:
        name = validate_tenant_name(name)
        plan = validate_plan(plan or None)
        with self.db.session() as s:
            if s.exec(select(Tenant).where(Tenant.name == name)).first() is not None:
                raise AlreadyExists(f"tenant {name!r} already exists")
            tenant = Tenant(id=_new_id(), name=name, plan=plan, created_at_ms=now_ms())
            s.add(tenant)
            s.add(Channel(name=tenant_channel(tenant.id), seq=0))
            s.flush()
            return self._tenant_proto(s, tenant)

    def list_tenants(self) -> list[operator_pb2.Tenant]:
        with self.db.session(readonly=True) as s:
            return [self._tenant_proto(s, t) for t in s.exec(select(Tenant).order_by(Tenant.name))]

    def get_tenant(self, name: str) -> operator_pb2.Tenant:
        with self.db.session(readonly=True) as s:
            return self._tenant_proto(s, self._tenant(s, name))

    def _tenant(self, s: Session, name: str) -> Tenant:
        name = validate_tenant_name(name)
        tenant = s.exec(select(Tenant).where(Tenant.name == name)).first()
        if tenant is None:
            raise NotFound(f"unknown tenant {name!r}")
        return tenant

    def _tenant_proto(self, s: Session, t: Tenant) -> operator_pb2.Tenant:
        channel = tenant_channel(t.id)
        gateways = s.exec(
            select(func.count()).select_from(Gateway)
            .where(Gateway.tenant_id == t.id, Gateway.status != "revoked")
        ).one()
        iocs = s.exec(select(func.count()).select_from(Ioc).where(Ioc.channel == channel)).one()
        return operator_pb2.Tenant(
            id=t.id, name=t.name, plan=t.plan, created_at_ms=t.created_at_ms, gateway_count=gateways,
            policy_version=t.policy_version, tenant_seq=self._head(s, channel), ioc_count=iocs,
        )

    def upload_thresholds(self, tenant_id: str) -> list[tuple[str, int]]:
        """(category, bytes per day) from the tenant's policy; read by the telemetry alerting, inside
        the fold's write transaction: read-only, or on SQLite it would wait for its own caller's lock."""
        with self.db.session(readonly=True) as s:
            tenant = s.get(Tenant, tenant_id)
            if tenant is None or not tenant.policy_bundle:
                return []
            bundle = common_pb2.PolicyBundle.FromString(tenant.policy_bundle)
            return [(t.category, t.bytes_per_day) for t in bundle.upload_thresholds]

    # -- gateways and enrollment ---------------------------------------------------------------

    def add_gateway(
        self, tenant_name: str, name: str, token_ttl_seconds: int | None = None
    ) -> tuple[operator_pb2.Gateway, str, int]:
        """A pending gateway and its one-time enrollment secret (only the hash is stored)."""
        name = validate_gateway_name(name)
        ttl = self.token_ttl_seconds if token_ttl_seconds is None else token_ttl_seconds
        if not 0 < ttl <= MAX_TTL_SECONDS:
            raise InvalidInput(f"token lifetime must be between 1 second and 10 years, got {ttl}s")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.db.session() as s:
            tenant = self._tenant(s, tenant_name)
            existing = s.exec(
                select(Gateway).where(Gateway.tenant_id == tenant.id, Gateway.name == name)
            ).first()
            if existing is not None:
                raise AlreadyExists(f"gateway {tenant.name}/{name} already exists ({existing.status})")
            now = now_ms()
            gateway = Gateway(id=_new_id(), tenant_id=tenant.id, name=name, created_at_ms=now)
            expires = now + ttl * 1000
            s.add(gateway)
            s.flush()
            s.add(EnrollmentToken(token_hash=hash_token(secret), gateway_id=gateway.id,
                                  expires_at_ms=expires))
            s.flush()
            return self._gateway_proto(s, gateway, tenant), secret, expires

    def list_gateways(self, tenant_name: str | None = None) -> list[operator_pb2.Gateway]:
        with self.db.session(readonly=True) as s:
            heads = self._heads(s)
            return [self._gateway_proto(s, g, t, heads) for g, t in self._gateways(s, tenant_name)]

    def get_gateway(self, tenant_name: str, name: str) -> operator_pb2.Gateway:
        with self.db.session(readonly=True) as s:
            tenant, gateway = self._gateway(s, tenant_name, name)
            return self._gateway_proto(s, gateway, tenant)

    def revoke_gateway(self, tenant_name: str, name: str) -> tuple[operator_pb2.Gateway, str]:
        """Revoked at once for gRPC (checked on every call); the caller revokes the NATS user."""
        with self.db.session() as s:
            tenant, gateway = self._gateway(s, tenant_name, name)
            if gateway.status == "revoked":
                raise Conflict(f"gateway {tenant.name}/{gateway.name} is already revoked")
            # Once, as a conditional UPDATE: of concurrent revokes one wins, and the row is re-read
            # under its lock, so an enrollment that committed meanwhile has its NATS key revoked too.
            moved = s.exec(  # type: ignore[call-overload]
                update(Gateway).where(col(Gateway.id) == gateway.id, col(Gateway.status) != "revoked")
                .values(status="revoked")
            )
            if moved.rowcount != 1:
                raise Conflict(f"gateway {tenant.name}/{gateway.name} is already revoked")
            s.refresh(gateway)
            gateway.status, gateway.revoked_at_ms = "revoked", now_ms()  # see store/revoked.py
            s.add(gateway)
            s.exec(delete(EnrollmentToken).where(col(EnrollmentToken.gateway_id) == gateway.id))
            s.flush()
            return self._gateway_proto(s, gateway, tenant), gateway.nats_public_key

    def redeem_enrollment_token(self, secret: str) -> EnrollmentTicket:
        """Spend a one-time token (see controller/enrollment.py). It commits before the caller
        signs anything, so a racer that loses never holds a certificate or a NATS credential."""
        with self.db.session() as s:
            return enrollment.spend_token(s, secret)

    def complete_enrollment(
        self, gateway_id: str, *, cert_serial: str, nats_public_key: str, agent_version: str
    ) -> common_pb2.Versions:
        with self.db.session() as s:
            tenant_id = enrollment.mark_enrolled(s, gateway_id, cert_serial=cert_serial,
                                                 nats_public_key=nats_public_key, agent_version=agent_version)
            return self._desired(s, tenant_id)

    def gateway_identity_by_serial(self, serial: str) -> GatewayIdentity | None:
        with self.db.session(readonly=True) as s:  # on every gateway call: must not queue behind writers
            gateway = s.exec(
                select(Gateway).where(Gateway.cert_serial == serial, Gateway.status == "enrolled")
            ).first()
            return None if gateway is None else GatewayIdentity(gateway.id, gateway.tenant_id)

    def record_statuses(self, updates: Sequence[StatusUpdate]) -> None:
        """Many reports in one transaction (see StatusRecorder)."""
        if not updates:
            return
        rows = [
            {"gid": u.gateway_id, "g": u.applied.global_seq, "t": u.applied.tenant_seq, "v": u.agent_version,
             "b": u.backend, "e": u.last_error, "seen": u.seen_at_ms, "r": refusals.encode(u.refusals),
             "rt": u.refusals_total}
            for u in updates
        ]
        statement = (
            update(Gateway).where(col(Gateway.id) == bindparam("gid")).values(
                applied_global_seq=bindparam("g"), applied_tenant_seq=bindparam("t"),
                agent_version=bindparam("v"), backend=bindparam("b"), last_error=bindparam("e"),
                last_seen_ms=bindparam("seen"), refusals=bindparam("r"), refusals_total=bindparam("rt"),
            )
        )
        with self.db.session() as s:
            s.connection().execute(statement, rows)

    def fleet_status(self, tenant_name: str | None = None) -> operator_pb2.FleetStatusResponse:
        with self.db.session(readonly=True) as s:
            heads = self._heads(s)
            gateways = [
                self._gateway_proto(s, g, t, heads)
                for g, t in self._gateways(s, tenant_name)
                if g.status != "revoked"
            ]
        return operator_pb2.FleetStatusResponse(
            gateways=gateways, total=len(gateways), online=sum(g.online for g in gateways),
            converged=sum(g.converged for g in gateways),
        )

    def _gateways(self, s: Session, tenant_name: str | None) -> list[tuple[Gateway, Tenant]]:
        query = select(Gateway, Tenant).join(Tenant, col(Gateway.tenant_id) == col(Tenant.id))
        if tenant_name:
            query = query.where(Tenant.id == self._tenant(s, tenant_name).id)
        return list(s.exec(query.order_by(Tenant.name, Gateway.name)).all())

    def _gateway(self, s: Session, tenant_name: str, name: str) -> tuple[Tenant, Gateway]:
        tenant = self._tenant(s, tenant_name)
        name = validate_gateway_name(name)
        gateway = s.exec(select(Gateway).where(Gateway.tenant_id == tenant.id, Gateway.name == name)).first()
        if gateway is None:
            raise NotFound(f"unknown gateway {tenant.name}/{name}")
        return tenant, gateway

    def _gateway_proto(
        self, s: Session, g: Gateway, t: Tenant, heads: dict[str, int] | None = None
    ) -> operator_pb2.Gateway:
        """`heads`: the channel heads read once for a whole listing (else read for this gateway)."""
        if heads is None:
            desired = self._desired(s, t.id)
        else:
            desired = common_pb2.Versions(global_seq=heads.get(GLOBAL_CHANNEL, 0),
                                          tenant_seq=heads.get(tenant_channel(t.id), 0))
        applied = common_pb2.Versions(global_seq=g.applied_global_seq, tenant_seq=g.applied_tenant_seq)
        return operator_pb2.Gateway(
            id=g.id, tenant=t.name, name=g.name, status=g.status, created_at_ms=g.created_at_ms,
            enrolled_at_ms=g.enrolled_at_ms, last_seen_ms=g.last_seen_ms,
            online=g.status == "enrolled" and now_ms() - g.last_seen_ms <= self.online_window_ms,
            desired=desired, applied=applied,
            converged=g.status == "enrolled" and desired == applied and not g.refusals_total,
            agent_version=g.agent_version, backend=g.backend, last_error=g.last_error,
            cert_serial=g.cert_serial or "", refusals=refusals.decode(g.refusals),
            refusals_total=g.refusals_total,
        )

    # -- policy --------------------------------------------------------------------------------

    def set_policy(self, tenant_name: str, text: str) -> operator_pb2.PolicyInfo:
        policy = parse_policy_yaml(text)  # before any write: a bad document changes nothing
        with self.db.session() as s:
            tenant = self._tenant(s, tenant_name)
            # The version is a counter on the tenant row, taken like a channel seq: the UPDATE holds
            # the row until commit, so concurrent writers get distinct versions and the stored document
            # is the one pushed last (the tenant row is always locked before its channel row).
            s.exec(  # type: ignore[call-overload]
                update(Tenant).where(col(Tenant.id) == tenant.id)
                .values(policy_version=col(Tenant.policy_version) + 1)
            )
            s.refresh(tenant)
            version = tenant.policy_version
            bundle = policy_to_bundle(policy, version)
            tenant.policy_version = version
            tenant.policy_yaml = text
            tenant.policy_bundle = bundle.SerializeToString(deterministic=True)
            tenant.policy_updated_at_ms = now_ms()
            s.add(tenant)
            info = self._policy_info(tenant)
            info.seq = self._append_push(s, tenant_channel(tenant.id), policy=bundle)
            return info

    def get_policy(self, tenant_name: str) -> operator_pb2.PolicyInfo:
        with self.db.session(readonly=True) as s:
            return self._policy_info(self._tenant(s, tenant_name))

    def _policy_info(self, t: Tenant) -> operator_pb2.PolicyInfo:
        if not t.policy_version:
            bundle = policy_to_bundle(parse_policy_yaml(DEFAULT_POLICY_YAML), 0)
            return operator_pb2.PolicyInfo(tenant=t.name, version=0, yaml=DEFAULT_POLICY_YAML, bundle=bundle)
        return operator_pb2.PolicyInfo(
            tenant=t.name, version=t.policy_version, yaml=t.policy_yaml,
            bundle=common_pb2.PolicyBundle.FromString(t.policy_bundle), updated_at_ms=t.policy_updated_at_ms,
        )

    # -- IOCs ----------------------------------------------------------------------------------

    def add_ioc(
        self, value: str, scope: str = "global", *, ttl_seconds: int = 0, source: str | None = None,
        confidence: int | None = None,
    ) -> operator_pb2.IocInfo:
        """Add or refresh an indicator; its push commits with it."""
        parsed = parse_ioc(value)
        where = parse_scope(scope)
        if not 0 <= ttl_seconds <= MAX_TTL_SECONDS:
            raise InvalidInput(f"ttl must be between 0 (never expires) and 10 years, got {ttl_seconds}s")
        confidence = validate_confidence(DEFAULT_CONFIDENCE if confidence is None else confidence)
        source = validate_source(source)
        now = now_ms()
        expires = now + ttl_seconds * 1000 if ttl_seconds else 0
        wire = to_proto(parsed, expires_at_ms=expires, confidence=confidence, source=source)
        with self.db.session() as s:
            channel = self._scope_channel(s, where)
            self._lock_channel(s, channel)  # else two adds of a new indicator both insert it
            row = s.exec(
                select(Ioc).where(Ioc.channel == channel, Ioc.type == wire.type, Ioc.value == wire.value)
            ).first()
            if row is None:
                row = Ioc(channel=channel, type=wire.type, value=wire.value, source=source,
                          confidence=confidence, created_at_ms=now)
            row.source, row.confidence, row.expires_at_ms = source, confidence, expires
            row.seq = self._append_push(s, channel, iocs=push_pb2.IocDelta(upsert=[wire]))
            s.add(row)
            s.flush()
            return self._ioc_info(row, str(where))

    def remove_ioc(self, value: str, scope: str = "global") -> operator_pb2.RemoveIocResponse:
        """Removing an indicator that is not there is not an error and changes nothing."""
        parsed = parse_ioc(value)
        where = parse_scope(scope)
        with self.db.session() as s:
            channel = self._scope_channel(s, where)
            self._lock_channel(s, channel)  # else two removes both push the removal
            row = s.exec(
                select(Ioc)
                .where(Ioc.channel == channel, Ioc.type == int(parsed.kind), Ioc.value == parsed.value)
            ).first()
            if row is None:
                return operator_pb2.RemoveIocResponse(removed=False, seq=self._head(s, channel))
            s.delete(row)
            gone = common_pb2.Ioc(type=row.type, value=row.value)
            seq = self._append_push(s, channel, iocs=push_pb2.IocDelta(remove=[gone]))
            return operator_pb2.RemoveIocResponse(removed=True, seq=seq)

    def list_iocs(self, scope: str | None = None) -> list[operator_pb2.IocInfo]:
        with self.db.session(readonly=True) as s:
            names = {tenant_channel(t.id): f"tenant:{t.name}" for t in s.exec(select(Tenant))}
            names[GLOBAL_CHANNEL] = "global"
            query = select(Ioc).order_by(Ioc.channel, Ioc.type, Ioc.value)
            if scope:
                query = query.where(Ioc.channel == self._scope_channel(s, parse_scope(scope)))
            return [self._ioc_info(row, names.get(row.channel, row.channel)) for row in s.exec(query)]

    def expire_iocs(self) -> int:
        """Drop indicators past their expiry and push the removals (the kernel already stopped them)."""
        now = now_ms()
        expired = (col(Ioc.expires_at_ms) > 0, col(Ioc.expires_at_ms) <= now)
        with self.db.session() as s:
            channels = sorted(set(s.exec(select(Ioc.channel).where(*expired)).all()))
            for channel in channels:  # sorted: controllers expiring at once lock in one order
                self._lock_channel(s, channel)
            # Read under the locks: what another expirer already removed is not removed (pushed) again.
            rows = s.exec(
                select(Ioc).where(*expired, col(Ioc.channel).in_(channels)).order_by(Ioc.channel)
            ).all()
            by_channel: dict[str, list[common_pb2.Ioc]] = {}
            for row in rows:
                by_channel.setdefault(row.channel, []).append(common_pb2.Ioc(type=row.type, value=row.value))
                s.delete(row)
            for channel, gone in by_channel.items():
                self._append_push(s, channel, iocs=push_pb2.IocDelta(remove=gone))
            return len(rows)

    def _scope_channel(self, s: Session, scope: Scope) -> str:
        if scope == GLOBAL_SCOPE or scope.tenant is None:
            return GLOBAL_CHANNEL
        return tenant_channel(self._tenant(s, scope.tenant).id)

    @staticmethod
    def _lock_channel(s: Session, channel: str) -> None:
        """Hold the channel row until commit BEFORE reading what a change depends on (PostgreSQL;
        a SQLite session already holds the write lock). Lock order everywhere: tenant row, channel
        row, then indicator rows, so concurrent writers serialize instead of deadlocking."""
        s.exec(select(Channel.name).where(Channel.name == channel).with_for_update()).first()

    @staticmethod
    def _ioc_info(row: Ioc, scope: str) -> operator_pb2.IocInfo:
        ioc = common_pb2.Ioc(type=row.type, value=row.value, expires_at_ms=row.expires_at_ms,
                             confidence=row.confidence, source=row.source)
        return operator_pb2.IocInfo(ioc=ioc, scope=scope, created_at_ms=row.created_at_ms, seq=row.seq)

    # -- pushes: outbox, resync ----------------------------------------------------------------

    def _append_push(
        self, s: Session, channel: str, *, policy: common_pb2.PolicyBundle | None = None,
        iocs: push_pb2.IocDelta | None = None,
    ) -> int:
        """Take the channel's next seq (row-locked by the UPDATE) and store the push with the change."""
        bumped = s.exec(  # type: ignore[call-overload]
            update(Channel).where(col(Channel.name) == channel).values(seq=Channel.seq + 1)
        )
        if bumped.rowcount == 0:
            s.add(Channel(name=channel, seq=1))
            s.flush()
        seq = self._head(s, channel)
        push = push_pb2.Push(channel=channel, seq=seq)
        if policy is not None:
            push.policy.CopyFrom(policy)
        if iocs is not None:
            push.iocs.CopyFrom(iocs)
        s.add(PushLog(channel=channel, seq=seq, payload=push.SerializeToString(deterministic=True),
                      created_at_ms=now_ms()))
        s.flush()
        return seq

    def _head(self, s: Session, channel: str) -> int:
        row = s.get(Channel, channel, populate_existing=True)
        return row.seq if row is not None else 0

    def _desired(self, s: Session, tenant_id: str) -> common_pb2.Versions:
        return common_pb2.Versions(
            global_seq=self._head(s, GLOBAL_CHANNEL), tenant_seq=self._head(s, tenant_channel(tenant_id))
        )

    def desired_versions(self, tenant_id: str) -> common_pb2.Versions:
        with self.db.session(readonly=True) as s:
            return self._desired(s, tenant_id)

    def channel_heads(self) -> dict[str, int]:
        with self.db.session(readonly=True) as s:  # polled by the publisher and the status recorder
            return {name: seq for name, seq in self._heads(s).items() if seq > 0}

    @staticmethod
    def _heads(s: Session) -> dict[str, int]:
        return {name: seq for name, seq in s.exec(select(Channel.name, Channel.seq))}

    def unpublished_outbox(self, limit: int = 1000) -> list[tuple[int, push_pb2.Push]]:
        with self.db.session(readonly=True) as s:
            rows = s.exec(
                select(PushLog).where(col(PushLog.published).is_(False)).order_by(col(PushLog.id)).limit(limit)
            ).all()
            return [(row.id, push_pb2.Push.FromString(row.payload)) for row in rows if row.id is not None]

    def mark_published(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self.db.session() as s:
            s.exec(update(PushLog).where(col(PushLog.id).in_(list(ids))).values(published=True))  # type: ignore[call-overload]

    def prune_push_log(self, keep: int = PUSH_LOG_KEEP) -> int:
        """Forget published deltas beyond the newest `keep` per channel; older agents get snapshots."""
        removed = 0
        with self.db.session() as s:
            for channel in s.exec(select(Channel)).all():
                cutoff = channel.seq - keep
                if cutoff > 0:
                    result = s.exec(delete(PushLog).where(  # type: ignore[call-overload]
                        col(PushLog.channel) == channel.name, col(PushLog.seq) <= cutoff,
                        col(PushLog.published).is_(True),
                    ))
                    removed += result.rowcount or 0
        return removed

    def sync_pushes(
        self, tenant_id: str, applied: common_pb2.Versions, *, force_snapshot: bool = False
    ) -> list[push_pb2.Push]:
        """What brings a gateway from `applied` to now: deltas or a snapshot (see controller.resync)."""
        return resync.sync_pushes(self.db, tenant_id, applied, force_snapshot=force_snapshot)
