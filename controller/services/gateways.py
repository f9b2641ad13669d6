"""Gateways and enrollment: add (with its one-time token), re-issue a token, enroll, revoke, delete,
identify, record reports.

The one-time transitions themselves (token spent once, pending -> enrolled once, revoked once,
retired once) are conditional UPDATEs in controller/enrollment.py and controller/services/retire.py."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from sqlalchemy import bindparam, false, update
from sqlmodel import Session, col, select

from controller import enrollment, refusals
from controller.domain.errors import AlreadyExists, Conflict, InvalidInput
from controller.domain.models import Gateway, GatewayIdentity, GatewayStatus, StatusUpdate, Versions
from controller.domain.names import validate_gateway_name
from controller.enrollment import EnrollmentTicket, hash_token
from controller.services.channels import desired
from controller.services.fleet import Fleet, gateway_row
from controller.services.policy_versions import drop_override, move_override
from controller.services.retire import retire_row, revoke_row
from controller.services.tenants import hold_tenant, new_id, tenant_row
from controller.store import models as rows
from controller.store.db import Database
from mssp.common.clock import now_ms
from mssp.common.limits import MAX_TTL_SECONDS

TOKEN_PREFIX = "mssp_enr_"


class Gateways:
    def __init__(self, db: Database, fleet: Fleet, *, token_ttl_seconds: int) -> None:
        self.db = db
        self.fleet = fleet
        self.token_ttl_seconds = token_ttl_seconds

    def add_gateway(
        self, tenant_name: str, name: str, token_ttl_seconds: int | None = None
    ) -> tuple[Gateway, str, int]:
        """A pending gateway, its one-time enrollment secret (only the hash is stored) and when
        that expires."""
        name = validate_gateway_name(name)
        ttl = self._ttl(token_ttl_seconds)
        with self.db.session() as s:
            tenant = tenant_row(s, tenant_name)
            existing = s.exec(
                select(rows.Gateway).where(rows.Gateway.tenant_id == tenant.id, rows.Gateway.name == name)
            ).first()
            if existing is not None:
                raise AlreadyExists(f"gateway {tenant.name}/{name} already exists ({existing.status})")
            hold_tenant(s, tenant)
            gateway = rows.Gateway(id=new_id(), tenant_id=tenant.id, name=name, created_at_ms=now_ms())
            s.add(gateway)
            s.flush()
            secret, expires = _new_token(s, gateway.id, ttl)
            return self.fleet.view(s, gateway, tenant), secret, expires

    def issue_token(
        self, tenant_name: str, name: str, token_ttl_seconds: int | None = None
    ) -> tuple[Gateway, str, int, bool]:
        """A new one-time token: for a pending gateway (its unused tokens stop working), or for a
        revoked one a re-enrollment as a new identity (a new gateway id; the revoked record stays as
        a tombstone, so its certificate and NATS key stay refused). The last item says which."""
        ttl = self._ttl(token_ttl_seconds)
        with self.db.session() as s:
            tenant, gateway = gateway_row(s, tenant_name, name)
            shown = f"{tenant.name}/{gateway.name}"
            if gateway.status == GatewayStatus.ENROLLED:
                raise Conflict(f"gateway {shown} is enrolled; a new token replaces its identity only after "
                               f"`msspctl gateway revoke {shown}`")
            hold_tenant(s, tenant)
            replaced = gateway.status == GatewayStatus.REVOKED
            if replaced:
                name, old_id = gateway.name, gateway.id
                retire_row(s, gateway, shown)
                gateway = rows.Gateway(id=new_id(), tenant_id=tenant.id, name=name, created_at_ms=now_ms())
                s.add(gateway)
                s.flush()
                move_override(s, tenant, old_id, gateway.id)  # its policy override stays with the name
            else:
                now = now_ms()
                # Still pending, as a conditional UPDATE that holds the row: a racing enrollment or
                # revoke either waits for this or has moved the gateway on (then this changes nothing).
                held = s.exec(  # type: ignore[call-overload]
                    update(rows.Gateway)
                    .where(col(rows.Gateway.id) == gateway.id,
                           col(rows.Gateway.status) == GatewayStatus.PENDING.value)
                    .values(status=GatewayStatus.PENDING.value)
                )
                if held.rowcount != 1:
                    raise Conflict(f"gateway {shown} was enrolled or revoked meanwhile; see `msspctl gateway "
                                   f"show {shown}`")
                token = rows.EnrollmentToken
                s.exec(  # type: ignore[call-overload]
                    update(token).where(col(token.gateway_id) == gateway.id, col(token.used_at_ms) == 0,
                                        col(token.expires_at_ms) > now)
                    .values(expires_at_ms=now)  # told "expired; ask the operator for a new one"
                )
            secret, expires = _new_token(s, gateway.id, ttl)
            return self.fleet.view(s, gateway, tenant), secret, expires, replaced

    def delete_gateway(self, tenant_name: str, name: str) -> tuple[Gateway, str]:
        """Revoke (as revoke_gateway) and remove the record from every view; the NATS key to revoke
        on the broker (empty if it was already revoked or never enrolled). The row stays as a
        tombstone (see controller/services/retire.py): the revocation lists are read from it."""
        with self.db.session() as s:
            tenant, gateway = gateway_row(s, tenant_name, name)
            drop_override(s, tenant, gateway)  # its policy override goes (locks the tenant row first)
            revoked_now = revoke_row(s, gateway)
            view = self.fleet.view(s, gateway, tenant)
            retire_row(s, gateway, f"{tenant.name}/{view.name}")
            return view, gateway.nats_public_key if revoked_now else ""

    def _ttl(self, token_ttl_seconds: int | None) -> int:
        ttl = self.token_ttl_seconds if token_ttl_seconds is None else token_ttl_seconds
        if not 0 < ttl <= MAX_TTL_SECONDS:
            raise InvalidInput(f"token lifetime must be between 1 second and 10 years, got {ttl}s")
        return ttl

    def revoke_gateway(self, tenant_name: str, name: str) -> tuple[Gateway, str]:
        """Revoked at once for gRPC (checked on every call); the caller revokes the NATS user (the
        key returned, empty if it never enrolled)."""
        with self.db.session() as s:
            tenant, gateway = gateway_row(s, tenant_name, name)
            # Once (see services/retire.py): of concurrent revokes one wins.
            if gateway.status == GatewayStatus.REVOKED or not revoke_row(s, gateway):
                raise Conflict(f"gateway {tenant.name}/{gateway.name} is already revoked")
            return self.fleet.view(s, gateway, tenant), gateway.nats_public_key

    def redeem_enrollment_token(self, secret: str) -> EnrollmentTicket:
        """Spend a one-time token (see controller/enrollment.py). It commits before the caller
        signs anything, so a racer that loses never holds a certificate or a NATS credential."""
        with self.db.session() as s:
            return enrollment.spend_token(s, secret)

    def complete_enrollment(
        self, gateway_id: str, *, cert_serial: str, nats_public_key: str, agent_version: str,
        alliance_aware: bool = False, cert_validity_ms: tuple[int, int] = (0, 0),
        rotation_aware: bool = False,
    ) -> Versions:
        """pending -> enrolled; the versions the new gateway should reach."""
        with self.db.session() as s:
            tenant_id = enrollment.mark_enrolled(s, gateway_id, cert_serial=cert_serial,
                                                 nats_public_key=nats_public_key, agent_version=agent_version,
                                                 alliance_aware=alliance_aware,
                                                 cert_validity_ms=cert_validity_ms,
                                                 rotation_aware=rotation_aware)
            return desired(s, tenant_id)

    def gateway_identity_by_serial(self, serial: str) -> GatewayIdentity | None:
        """The current certificate only: the one the last renewal replaced may renew again (an answer
        lost), nothing else (services/renewal.py)."""
        with self.db.session(readonly=True) as s:  # on every gateway call: must not queue behind writers
            found = s.exec(
                select(rows.Gateway.id, rows.Gateway.tenant_id, rows.Tenant.sharing)
                .join(rows.Tenant, rows.Tenant.id == rows.Gateway.tenant_id)
                .where(rows.Gateway.cert_serial == serial,
                       rows.Gateway.status == GatewayStatus.ENROLLED.value)
            ).first()
            return None if found is None else GatewayIdentity(found[0], found[1], bool(found[2]))

    def unable_to_rotate(self) -> list[str]:
        """TENANT/NAME of enrolled gateways whose agents trust one signing key only: a key rotation
        would cut them off pushes."""
        with self.db.session(readonly=True) as s:
            found = s.exec(
                select(rows.Tenant.name, rows.Gateway.name)
                .join(rows.Tenant, rows.Tenant.id == rows.Gateway.tenant_id)
                .where(rows.Gateway.status == GatewayStatus.ENROLLED.value,
                       col(rows.Gateway.rotation_aware) == false())
                .order_by(rows.Tenant.name, rows.Gateway.name)
            ).all()
            return [f"{tenant}/{name}" for tenant, name in found]

    def record_statuses(self, updates: Sequence[StatusUpdate]) -> None:
        """Many reports in one transaction (see StatusRecorder)."""
        if not updates:
            return
        params = [
            {"gid": u.gateway_id, "g": u.applied.global_seq, "t": u.applied.tenant_seq,
             "a": u.applied.alliance_seq, "aw": u.alliance_aware, "ra": u.rotation_aware,
             "co": u.clock_offset_ms, "cra": u.ca_rollover_aware, "v": u.agent_version, "b": u.backend,
             "e": u.last_error,
             "seen": u.seen_at_ms, "r": refusals.encode(u.refusals),
             "rt": u.refusals_total, "ib": u.ioc_budget, "lo": u.left_out_by_budget}
            for u in updates
        ]
        statement = (
            update(rows.Gateway).where(col(rows.Gateway.id) == bindparam("gid")).values(
                applied_global_seq=bindparam("g"), applied_tenant_seq=bindparam("t"),
                applied_alliance_seq=bindparam("a"), alliance_aware=bindparam("aw"),
                rotation_aware=bindparam("ra"), clock_offset_ms=bindparam("co"),
                ca_rollover_aware=bindparam("cra"),
                agent_version=bindparam("v"), backend=bindparam("b"), last_error=bindparam("e"),
                last_seen_ms=bindparam("seen"), refusals=bindparam("r"), refusals_total=bindparam("rt"),
                ioc_budget=bindparam("ib"), left_out_by_budget=bindparam("lo"),
            )
        )
        with self.db.session() as s:
            s.connection().execute(statement, params)


def _new_token(s: Session, gateway_id: str, ttl: int) -> tuple[str, int]:
    """A one-time secret for the gateway (only its hash is stored) and when it expires."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = now_ms() + ttl * 1000
    s.add(rows.EnrollmentToken(token_hash=hash_token(secret), gateway_id=gateway_id, expires_at_ms=expires))
    s.flush()
    return secret, expires
