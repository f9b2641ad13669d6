"""Read side of telemetry: top lists, billing usage, alerts (plain data, no transport).

Every query is scoped by tenant id (alerts may span all tenants for the operator). Grouping by
dimension happens in SQL over the hourly rollups; splitting "<key>|<host>" dimensions and merging
metrics happens here on the (small) grouped result.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, func, select

from controller.domain.errors import InvalidInput
from controller.store.db import Database
from controller.telemetry.models import DetectionEvent, RollupHourly, UsageDaily
from mssp.common.metrics import (
    ALERT_KINDS,
    CATEGORY_BYTES,
    DNS_BLOCKED,
    DNS_QUERIES,
    HOST_EGRESS,
    HOST_FLOWS,
    IOC_HITS,
)

TOP_BY = ("host", "destination", "category", "ioc")
MAX_LIMIT = 1000
_PERIOD_RE = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")

_ROLLUP = RollupHourly.__table__  # type: ignore[attr-defined]
_USAGE = UsageDaily.__table__  # type: ignore[attr-defined]
_EVENT = DetectionEvent.__table__  # type: ignore[attr-defined]


@dataclass
class TopItem:
    key: str
    gateway_id: str = ""
    packets: int = 0
    bytes: int = 0
    count: int = 0
    blocked: int = 0
    hosts: set[tuple[str, str]] = field(default_factory=set)  # (gateway_id, host)


@dataclass(frozen=True)
class GatewayUsage:
    gateway_id: str
    days_online: int
    egress_bytes: int
    batches: int
    online_seconds: int


@dataclass(frozen=True)
class Usage:
    tenant_id: str
    period: str
    gateways: list[GatewayUsage]

    @property
    def gateway_days(self) -> int:
        return sum(g.days_online for g in self.gateways)

    @property
    def egress_bytes(self) -> int:
        return sum(g.egress_bytes for g in self.gateways)


@dataclass(frozen=True)
class Alert:
    id: str
    tenant_id: str
    gateway_id: str
    kind: str
    subject: str
    host: str
    at_ms: int
    details: dict[str, Any]


def _split(dimension: str) -> tuple[str, str]:
    key, _, host = dimension.rpartition("|")
    return (key, host) if key else (dimension, "")


def _check_limit(limit: int) -> int:
    if not 0 < limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def _grouped(db: Database, tenant_id: str, metrics: list[str], since_ms: int) -> list[Any]:
    stmt = (
        select(_ROLLUP.c.metric, _ROLLUP.c.gateway_id, _ROLLUP.c.dimension,
               func.sum(_ROLLUP.c.packets), func.sum(_ROLLUP.c.bytes), func.sum(_ROLLUP.c.count))
        .where(_ROLLUP.c.tenant_id == tenant_id, _ROLLUP.c.metric.in_(metrics), _ROLLUP.c.hour_ms >= since_ms)
        .group_by(_ROLLUP.c.metric, _ROLLUP.c.gateway_id, _ROLLUP.c.dimension)
    )
    with db.read_engine.connect() as conn:
        return list(conn.execute(stmt))


def top(db: Database, tenant_id: str, by: str, since_ms: int, limit: int = 20) -> list[TopItem]:
    """The biggest hosts (egress bytes), destinations (DNS queries), categories (bytes) or IOCs (hits)
    of one tenant since `since_ms` (hour granularity: the hour containing it counts whole)."""
    if by not in TOP_BY:
        raise InvalidInput(f"cannot rank by {by!r}; use one of {', '.join(TOP_BY)}")
    _check_limit(limit)
    since_hour = since_ms // 3_600_000 * 3_600_000
    items: dict[tuple[str, str], TopItem] = {}

    def item(key: str, gateway_id: str = "") -> TopItem:
        found = items.get((key, gateway_id))
        if found is None:
            found = items[(key, gateway_id)] = TopItem(key=key, gateway_id=gateway_id)
        return found

    if by == "host":
        rows = _grouped(db, tenant_id, [HOST_EGRESS, HOST_FLOWS], since_hour)
        for metric, gw, dim, packets, nbytes, _count in rows:
            it = item(dim, gw)
            it.hosts.add((gw, dim))
            if metric == HOST_EGRESS:
                it.packets += int(packets)
                it.bytes += int(nbytes)
            else:
                it.count += int(packets)  # new flows
        ranked = sorted(items.values(), key=lambda i: (-i.bytes, -i.count, i.key, i.gateway_id))
    elif by == "destination":
        for metric, gw, dim, _p, _b, count in _grouped(db, tenant_id, [DNS_QUERIES, DNS_BLOCKED], since_hour):
            domain, host = _split(dim)
            it = item(domain)
            it.hosts.add((gw, host))
            if metric == DNS_QUERIES:
                it.count += int(count)
            else:
                it.blocked += int(count)
        ranked = sorted(items.values(), key=lambda i: (-i.count, -i.blocked, i.key))
    elif by == "category":
        for _m, gw, dim, packets, nbytes, _c in _grouped(db, tenant_id, [CATEGORY_BYTES], since_hour):
            category, host = _split(dim)
            it = item(category)
            it.hosts.add((gw, host))
            it.packets += int(packets)
            it.bytes += int(nbytes)
        ranked = sorted(items.values(), key=lambda i: (-i.bytes, -i.packets, i.key))
    else:
        rows = _grouped(db, tenant_id, [IOC_HITS, DNS_BLOCKED], since_hour)
        for metric, gw, dim, packets, nbytes, count in rows:
            ioc, host = _split(dim)
            it = item(ioc)
            it.hosts.add((gw, host))
            if metric == IOC_HITS:
                it.packets += int(packets)
                it.bytes += int(nbytes)
            else:
                it.count += int(count)  # sinkholed DNS queries
        ranked = sorted(items.values(), key=lambda i: (-(i.packets + i.count), -i.bytes, i.key))
    return ranked[:limit]


def parse_period(period: str) -> tuple[str, str]:
    """'2025-11' -> ('2025-11-01', '2025-12-01'): the UTC days of a billing month, end exclusive."""
    m = _PERIOD_RE.fullmatch(period.strip() if isinstance(period, str) else "")
    if not m:
        raise InvalidInput(f"billing period must be YYYY-MM, got {str(period)[:20]!r}")
    year, month = int(m[1]), int(m[2])
    nxt = f"{year + 1:04d}-01" if month == 12 else f"{year:04d}-{month + 1:02d}"
    return f"{year:04d}-{month:02d}-01", f"{nxt}-01"


def next_period(period: str) -> str:
    """'2025-12' -> '2026-01'."""
    return parse_period(period)[1][:7]


def period_bounds(period: str) -> tuple[str, str, int, int]:
    """(first day, end day, start ms, end ms) of a UTC month, end exclusive."""
    first, end = parse_period(period)
    return first, end, _day_ms(first), _day_ms(end)


def _day_ms(day: str) -> int:
    return int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp() * 1000)


def usage(db: Database, tenant_id: str, period: str) -> Usage:
    """Per gateway for one month: days with telemetry (gateway-days), egress bytes, batches and the
    time the batches cover."""
    first, end = parse_period(period)
    stmt = (
        select(
            _USAGE.c.gateway_id,
            func.sum(case((_USAGE.c.batches > 0, 1), else_=0)),
            func.sum(_USAGE.c.bytes),
            func.sum(_USAGE.c.batches),
            func.sum(_USAGE.c.online),
        )
        .where(_USAGE.c.tenant_id == tenant_id, _USAGE.c.day >= first, _USAGE.c.day < end)
        .group_by(_USAGE.c.gateway_id)
        .order_by(_USAGE.c.gateway_id)
    )
    with db.read_engine.connect() as conn:
        rows = list(conn.execute(stmt))
    gateways = [GatewayUsage(gw, int(days or 0), int(nbytes or 0), int(batches or 0), int(online or 0))
                for gw, days, nbytes, batches, online in rows]
    return Usage(tenant_id=tenant_id, period=period.strip(), gateways=gateways)


def alert_from_row(r: Any) -> Alert:
    """A detection_event row (as a mapping) as an Alert; unreadable details become {}."""
    try:
        details = json.loads(r["details"])
    except ValueError:
        details = {}
    return Alert(id=r["id"], tenant_id=r["tenant_id"], gateway_id=r["gateway_id"], kind=r["kind"],
                 subject=r["subject"], host=r["host"], at_ms=int(r["at_ms"]),
                 details=details if isinstance(details, dict) else {})


def alerts(
    db: Database, tenant_id: str | None, since_ms: int, limit: int = 100, kind: str | None = None
) -> list[Alert]:
    """Newest first; `tenant_id` None spans every tenant (the operator's view)."""
    _check_limit(limit)
    if kind and kind not in ALERT_KINDS:
        raise InvalidInput(f"unknown alert kind {kind!r}; use one of {', '.join(ALERT_KINDS)}")
    stmt = select(_EVENT).where(_EVENT.c.at_ms >= since_ms)
    if tenant_id is not None:
        stmt = stmt.where(_EVENT.c.tenant_id == tenant_id)
    if kind:
        stmt = stmt.where(_EVENT.c.kind == kind)
    stmt = stmt.order_by(_EVENT.c.at_ms.desc(), _EVENT.c.id).limit(limit)
    with db.read_engine.connect() as conn:
        rows = list(conn.execute(stmt).mappings())
    return [alert_from_row(r) for r in rows]


def totals(db: Database, tenant_id: str | None = None) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    """(gateway, metric, dimension) -> (packets, bytes, count) over all time: what reconciliation
    against agent-side totals compares."""
    stmt = select(
        _ROLLUP.c.gateway_id, _ROLLUP.c.metric, _ROLLUP.c.dimension,
        func.sum(_ROLLUP.c.packets), func.sum(_ROLLUP.c.bytes), func.sum(_ROLLUP.c.count),
    ).group_by(_ROLLUP.c.gateway_id, _ROLLUP.c.metric, _ROLLUP.c.dimension)
    if tenant_id is not None:
        stmt = stmt.where(_ROLLUP.c.tenant_id == tenant_id)
    with db.read_engine.connect() as conn:
        return {(g, m, d): (int(p), int(b), int(c)) for g, m, d, p, b, c in conn.execute(stmt)}

