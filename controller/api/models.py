"""Response bodies of the tenant API (pydantic, so the OpenAPI document is exact). Money and other
Decimals are strings ("12.50"): a JSON number would be read as a float by most clients."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, Field

from controller.domain import reporting as r


class Tenant(BaseModel):
    id: str
    name: str
    plan: str
    gateway_count: int = Field(description="gateways not revoked")
    sharing: str = Field(description="alliance (shares its detections anonymously and receives the "
                         "alliance's indicators) or none")


class Gateway(BaseModel):
    id: str
    name: str
    status: str = Field(description="pending | enrolled | revoked")
    desired_global_seq: int
    desired_tenant_seq: int
    applied_global_seq: int
    applied_tenant_seq: int
    converged: bool
    online: bool
    last_seen_ms: int = Field(description="epoch ms; 0: never seen")
    agent_version: str
    period: str = Field(description="the UTC month online_seconds covers (YYYY-MM)")
    online_seconds: int


class GatewayPage(BaseModel):
    items: list[Gateway]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class SharedIndicator(BaseModel):
    id: str
    type: str = Field(description="ipv4 | ipv6 | ipv4_cidr | ipv6_cidr | domain")
    value: str
    confidence: int
    added_at_ms: int
    expires_at_ms: int = Field(description="epoch ms; 0: never")
    origin: str = Field(description="alliance (promoted from member organisations' sightings) or mssp")
    seen_by_organisations: int | None = Field(
        description="how many organisations saw it; null when fewer than the anonymity threshold (k)")


class SharedIndicatorPage(BaseModel):
    items: list[SharedIndicator]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class FalsePositive(BaseModel):
    indicator: str
    exempt: bool = Field(description="this tenant's gateways no longer enforce it from shared lists")
    new: bool = Field(description="false when this tenant had reported it already")


class ChargeLine(BaseModel):
    id: str = Field(description="stable: <tenant id>:<period>:<meter>")
    meter: str
    description: str
    quantity: str
    included: str
    billable: str
    unit_price: str
    amount: str
    currency: str


class DailyUsage(BaseModel):
    day: str
    gateways_online: int
    egress_bytes: int


class Usage(BaseModel):
    tenant: str
    period: str
    closed: bool
    plan: str
    currency: str
    gateway_days: int
    egress_bytes: int
    included_gateway_days: int
    included_egress_bytes: int
    lines: list[ChargeLine]
    total: str
    daily: list[DailyUsage]
    warnings: list[str]


class HostRef(BaseModel):
    gateway: str
    address: str


class BlockedDestination(BaseModel):
    domain: str
    blocked: int
    hosts: int


class IndicatorHits(BaseModel):
    indicator: str
    hits: int
    bytes: int
    hosts: list[HostRef]
    thanks_to_alliance: bool = Field(description="blocked only because the alliance shares it")


class HostUpload(BaseModel):
    category: str
    host: HostRef
    bytes: int


class LeakAlert(BaseModel):
    id: str
    at_ms: int
    gateway: str
    host: str
    category: str
    bytes: int
    threshold: int


class GatewayOffline(BaseModel):
    gateway_id: str
    gateway: str
    online_seconds: int
    offline_seconds: int


class DayCount(BaseModel):
    day: str
    value: int


class BeaconSuspect(BaseModel):
    destination: str
    host: HostRef
    score: int = Field(description="the router's periodicity score, 0-100")
    connections: int
    last_seen_ms: int


class SecurityReport(BaseModel):
    tenant: str
    period: str
    top_blocked: list[BlockedDestination]
    ioc_hits: list[IndicatorHits]
    uploads: list[HostUpload]
    leak_alerts: list[LeakAlert]
    offline: list[GatewayOffline]
    blocks_per_day: list[DayCount]
    beacon_suspects: list[BeaconSuspect] = Field(
        description="suspected command-and-control, highest score first")


class Alert(BaseModel):
    id: str
    at_ms: int
    kind: str = Field(description="ioc_hit | upload_threshold")
    gateway_id: str
    gateway: str
    host: str
    subject: str
    details: dict[str, Any]


class AlertPage(BaseModel):
    items: list[Alert]
    next_cursor: str | None


def gateway(g: r.GatewayReport) -> Gateway:
    return Gateway(**asdict(g))


def usage(u: r.UsageStatement) -> Usage:
    lines = [ChargeLine(id=c.id, meter=c.meter, description=c.description, quantity=str(c.quantity),
                        included=str(c.included), billable=str(c.billable), unit_price=str(c.unit_price),
                        amount=str(c.amount), currency=c.currency) for c in u.lines]
    return Usage(
        tenant=u.tenant, period=u.period, closed=u.closed, plan=u.plan, currency=u.currency,
        gateway_days=u.gateway_days, egress_bytes=u.egress_bytes,
        included_gateway_days=u.included_gateway_days, included_egress_bytes=u.included_egress_bytes,
        lines=lines, total=str(u.total), daily=[DailyUsage(**asdict(d)) for d in u.daily],
        warnings=list(u.warnings),
    )


def security(s: r.SecurityReport) -> SecurityReport:
    return SecurityReport(
        tenant=s.tenant, period=s.period,
        top_blocked=[BlockedDestination(**asdict(b)) for b in s.top_blocked],
        ioc_hits=[IndicatorHits(indicator=i.indicator, hits=i.hits, bytes=i.bytes,
                                hosts=[HostRef(**asdict(h)) for h in i.hosts],
                                thanks_to_alliance=i.thanks_to_alliance) for i in s.ioc_hits],
        uploads=[HostUpload(category=u.category, host=HostRef(**asdict(u.host)), bytes=u.bytes)
                 for u in s.uploads],
        leak_alerts=[LeakAlert(**asdict(a)) for a in s.leak_alerts],
        offline=[GatewayOffline(**asdict(o)) for o in s.offline],
        blocks_per_day=[DayCount(**asdict(d)) for d in s.blocks_per_day],
        beacon_suspects=[BeaconSuspect(destination=b.destination, host=HostRef(**asdict(b.host)),
                                       score=b.score, connections=b.connections, last_seen_ms=b.last_seen_ms)
                         for b in s.beacon_suspects],
    )


def alert(a: Any, names: dict[str, str]) -> Alert:
    return Alert(id=a.id, at_ms=a.at_ms, kind=a.kind, gateway_id=a.gateway_id,
                 gateway=names.get(a.gateway_id, ""), host=a.host, subject=a.subject, details=a.details)
