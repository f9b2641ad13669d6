"""Which CA each gateway's certificate is from, and whether its agent can follow a CA rollover."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import false, func, update
from sqlmodel import col, select

from controller.domain.models import GatewayStatus
from controller.store import models as rows
from controller.store.db import Database


@dataclass(frozen=True)
class CaCounts:
    enrolled: int
    on_other_ca: int  # enrolled gateways whose certificate is not from the CA named


class CaFleet:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record_certificate(self, gateway_id: str, serial: str, ca_fingerprint: str,
                           ca_rollover_aware: bool | None = None) -> None:
        """After an enrollment or a renewal committed `serial`: only while it is still the gateway's
        certificate (a later renewal's answer is not overwritten by this one's)."""
        values: dict[str, object] = {"cert_ca": ca_fingerprint}
        if ca_rollover_aware is not None:
            values["ca_rollover_aware"] = ca_rollover_aware
        with self.db.session() as s:
            s.exec(update(rows.Gateway).where(  # type: ignore[call-overload]
                col(rows.Gateway.id) == gateway_id, col(rows.Gateway.cert_serial) == serial).values(**values))

    def unable_to_follow(self) -> list[str]:
        """TENANT/NAME of enrolled gateways whose agents would be cut off by a CA rollover."""
        with self.db.session(readonly=True) as s:
            found = s.exec(
                select(rows.Tenant.name, rows.Gateway.name)
                .join(rows.Tenant, rows.Tenant.id == rows.Gateway.tenant_id)
                .where(rows.Gateway.status == GatewayStatus.ENROLLED.value,
                       col(rows.Gateway.ca_rollover_aware) == false())
                .order_by(rows.Tenant.name, rows.Gateway.name)
            ).all()
            return [f"{tenant}/{name}" for tenant, name in found]

    def counts(self, ca_fingerprint: str, *, first_ca: bool) -> CaCounts:
        """Enrolled gateways, and those not on `ca_fingerprint`; rows from before CA rollovers ("")
        count as on it when it is the controller's first CA (`first_ca`)."""
        on = [ca_fingerprint, ""] if first_ca else [ca_fingerprint]
        with self.db.session(readonly=True) as s:
            enrolled = rows.Gateway.status == GatewayStatus.ENROLLED.value
            total = s.exec(select(func.count()).select_from(rows.Gateway).where(enrolled)).one()
            other = s.exec(select(func.count()).select_from(rows.Gateway).where(
                enrolled, col(rows.Gateway.cert_ca).not_in(on))).one()
        return CaCounts(int(total), int(other))
