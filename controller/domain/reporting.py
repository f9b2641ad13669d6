"""What the tenant-facing read side returns (tenant API, billing export, reports): frozen values,
no transport types. Money is Decimal (rendered as exact strings at the edges), bytes are ints.

A LAN host is named by its gateway and address (`HostRef`): two gateways may each have a
192.0.2.10, and they are different machines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list; `next_cursor` is None on the last page."""

    items: tuple[T, ...]
    next_cursor: str | None = None


@dataclass(frozen=True)
class TenantSummary:
    id: str
    name: str
    plan: str
    gateway_count: int  # not revoked
    sharing: str  # "alliance" (in it: shares sightings, receives alliance indicators) or "none"


@dataclass(frozen=True)
class GatewayReport:
    """A gateway as its tenant sees it, with its online time in a period (UTC month)."""

    id: str
    name: str
    status: str  # pending | enrolled | revoked
    desired_global_seq: int
    desired_tenant_seq: int
    applied_global_seq: int
    applied_tenant_seq: int
    converged: bool
    online: bool
    last_seen_ms: int  # 0: never
    agent_version: str
    period: str
    online_seconds: int  # time covered by its telemetry in the period


@dataclass(frozen=True)
class ChargeLine:
    id: str  # stable: "<tenant id>:<period>:<meter>" (re-exports are idempotent)
    tenant_id: str
    tenant: str
    period: str
    plan: str
    meter: str  # base | gateway_days | egress_gb | adjustment:<YYYY-MM>:<meter>
    description: str
    quantity: Decimal
    included: Decimal
    billable: Decimal
    unit_price: Decimal
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class DailyUsage:
    day: str  # YYYY-MM-DD (UTC)
    gateways_online: int  # gateway-days on that day
    egress_bytes: int


@dataclass(frozen=True)
class UsageStatement:
    """One tenant's month: the meters, what the plan includes, the charge lines and the total. A
    closed period shows what was frozen at close; an open one is computed from telemetry now."""

    tenant_id: str
    tenant: str
    period: str
    closed: bool
    plan: str
    currency: str
    gateway_days: int
    egress_bytes: int
    included_gateway_days: int
    included_egress_bytes: int
    lines: tuple[ChargeLine, ...]
    total: Decimal
    daily: tuple[DailyUsage, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostRef:
    gateway: str  # the gateway's name
    address: str  # the LAN address


@dataclass(frozen=True)
class BlockedDestination:
    domain: str
    blocked: int  # sinkholed DNS queries
    hosts: int  # distinct LAN hosts that asked


@dataclass(frozen=True)
class IndicatorHits:
    indicator: str
    hits: int  # packets to it plus sinkholed queries for it
    bytes: int
    hosts: tuple[HostRef, ...]
    # Blocked only because the alliance shares it: neither the tenant's own nor the MSSP's global list
    # holds it (herd immunity; it never says who saw it first).
    thanks_to_alliance: bool = False


@dataclass(frozen=True)
class HostUpload:
    category: str  # cloud-storage, ai-tools...
    host: HostRef
    bytes: int


@dataclass(frozen=True)
class LeakAlert:
    id: str
    at_ms: int
    gateway: str
    host: str
    category: str
    bytes: int
    threshold: int


@dataclass(frozen=True)
class GatewayOffline:
    gateway_id: str
    gateway: str
    online_seconds: int
    offline_seconds: int  # from enrollment (or the period start) to the period end (or now)


@dataclass(frozen=True)
class DayCount:
    day: str  # YYYY-MM-DD
    value: int


@dataclass(frozen=True)
class BeaconSuspect:
    """Suspected command-and-control: a LAN host that connected to `destination` like a timer."""

    destination: str
    host: HostRef
    score: int  # the router's periodicity score, 0-100
    connections: int
    last_seen_ms: int


@dataclass(frozen=True)
class SecurityReport:
    tenant_id: str
    tenant: str
    period: str
    top_blocked: tuple[BlockedDestination, ...]
    ioc_hits: tuple[IndicatorHits, ...]
    uploads: tuple[HostUpload, ...]  # per category per LAN host, biggest first
    leak_alerts: tuple[LeakAlert, ...]
    offline: tuple[GatewayOffline, ...]
    blocks_per_day: tuple[DayCount, ...] = field(default=())  # for the monthly report's chart
    beacon_suspects: tuple[BeaconSuspect, ...] = field(default=())  # highest score first
