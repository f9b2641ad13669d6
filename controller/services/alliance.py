"""The alliance: which tenants share, and what their gateways may receive on the broker.

A tenant in the alliance contributes sightings and its gateways follow the alliance channel; the
broker lets only those gateways subscribe to it. Changing the setting re-issues the NATS user JWT of
every gateway of the tenant (a wider or narrower subscribe list) and revokes the JWTs issued before
it, so the broker cuts each live connection once and the agent, asking GetBrokers as it does when
NATS fails, picks up the new JWT and the channels to follow. Nobody keeps a permission the tenant
gave up.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, true, update
from sqlmodel import Session, col, select

from controller.domain.errors import InvalidInput, NotFound
from controller.domain.models import GatewayStatus, Tenant
from controller.services.channels import sharing
from controller.services.tenants import tenant_row, tenant_view
from controller.store import models as rows
from controller.store.db import Database
from mssp.common.channels import ALLIANCE_CHANNEL, GLOBAL_CHANNEL, tenant_channel
from mssp.common.clock import now_ms


@dataclass(frozen=True)
class BrokerAccess:
    """What GetBrokers tells one gateway beyond the URLs (see controller/grpc_api/gateway.py)."""

    gateway_id: str
    tenant_id: str
    nats_public_key: str
    sharing: bool
    jwt_issued_s: int  # 0: the JWT enrollment gave is current
    enrolled_at_ms: int
    cert_not_after_ms: int = 0  # its JWT expires with its certificate (0: enrolled before renewal)

    @property
    def channels(self) -> list[str]:
        names = [GLOBAL_CHANNEL, tenant_channel(self.tenant_id)]
        return [*names, ALLIANCE_CHANNEL] if self.sharing else names


class Alliance:
    def __init__(self, db: Database) -> None:
        self.db = db

    def set_sharing(self, name: str, sharing: bool) -> tuple[Tenant, list[str]]:
        """Opt the tenant in or out; the NATS keys whose JWTs were re-issued (empty when nothing
        changed). One conditional UPDATE decides, so concurrent calls change it once."""
        if not isinstance(sharing, bool):
            raise InvalidInput("sharing must be on or off")
        with self.db.session() as s:
            tenant = tenant_row(s, name)
            moved = s.exec(  # type: ignore[call-overload]
                update(rows.Tenant)
                .where(col(rows.Tenant.id) == tenant.id, col(rows.Tenant.deleted_at_ms) == 0,
                       col(rows.Tenant.sharing) != sharing)
                .values(sharing=sharing)
            )
            keys: list[str] = []
            if moved.rowcount == 1:
                keys = _reissue_jwts(s, tenant.id)
            elif s.exec(select(rows.Tenant.deleted_at_ms).where(rows.Tenant.id == tenant.id)).first():
                raise NotFound(f"unknown tenant {tenant.name!r}")
            s.refresh(tenant)
            return tenant_view(s, tenant), keys

    def broker_access(self, gateway_id: str) -> BrokerAccess | None:
        """None for a gateway that is not enrolled (revoked in the meantime)."""
        with self.db.session(readonly=True) as s:
            row = s.exec(
                select(rows.Gateway, rows.Tenant.sharing)
                .join(rows.Tenant, rows.Tenant.id == rows.Gateway.tenant_id)
                .where(rows.Gateway.id == gateway_id, rows.Gateway.status == GatewayStatus.ENROLLED.value)
            ).first()
        if row is None:
            return None
        g, sharing = row
        return BrokerAccess(g.id, g.tenant_id, g.nats_public_key, bool(sharing), g.nats_jwt_issued_s,
                            g.enrolled_at_ms, g.cert_not_after_ms)

    def tenant_shares(self, tenant_id: str) -> bool:
        with self.db.session(readonly=True) as s:
            return sharing(s, tenant_id)


def _reissue_jwts(s: Session, tenant_id: str) -> list[str]:
    """Give every live gateway of the tenant a new JWT issue time, later than any before (JWT times
    are whole seconds; the broker revokes those issued up to one second before it)."""
    # Only agents that pick up a re-issued JWT (an older one would be locked out with its revoked one),
    # and pending gateways (an enrollment in flight may have minted under the old setting).
    pending = rows.Gateway.status == GatewayStatus.PENDING.value
    live = (rows.Gateway.tenant_id == tenant_id, rows.Gateway.status != GatewayStatus.REVOKED.value,
            or_(col(rows.Gateway.alliance_aware) == true(), pending))
    latest = s.exec(select(func.max(rows.Gateway.nats_jwt_issued_s)).where(*live)).one() or 0
    issued = max(now_ms() // 1000 + 1, int(latest) + 1)
    s.exec(update(rows.Gateway).where(*live).values(nats_jwt_issued_s=issued))  # type: ignore[call-overload]
    keys = s.exec(select(rows.Gateway.nats_public_key).where(*live, rows.Gateway.nats_public_key != "")).all()
    return sorted(keys)
