"""The tenant's security report for one month, from the daily rollups, daily usage and detections.

Every query names the tenant in SQL and reads the day range [period start, period end) through the
daily rollup primary key (tenant_id, metric, day_ms, ...), so the cost follows one tenant's month (30
rows per gateway and dimension), not the table. Grouping happens in SQL by (gateway, dimension);
splitting "<key>|<host>" and ranking happen here on that grouped result. Lists are bounded: the top
LIMIT (20) entries of each, biggest first, and at most LIMIT hosts per indicator.

A tenant sees only its own gateways, by name (a retired record by the name it had), never an id of
another tenant's object: rows are selected by tenant id before anything is labelled.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from controller.domain.errors import NotFound
from controller.domain.reporting import (
    BeaconSuspect,
    BlockedDestination,
    DayCount,
    GatewayOffline,
    HostRef,
    HostUpload,
    IndicatorHits,
    LeakAlert,
    SecurityReport,
)
from controller.store import models as rows
from controller.store.db import Database
from controller.store.sighting_models import Sighting
from controller.telemetry.alerts import split_dimension
from controller.telemetry.fold import DAY_MS
from controller.telemetry.models import DetectionEvent, RollupDaily, UsageDaily
from controller.telemetry.queries import period_bounds
from mssp.common.channels import ALLIANCE_CHANNEL
from mssp.common.clock import now_ms as clock_ms
from mssp.common.metrics import CATEGORY_BYTES, DNS_BLOCKED, IOC_HITS, AlertKind

LIMIT = 20
# An upload alert is raised when the telemetry is folded; telemetry for the last day of a month may
# arrive a little after it. Alerts are taken by the day they are about, looked for this long after.
LEAK_GRACE_MS = 7 * DAY_MS
_LEAK_SCAN = 1000  # alerts read per report at most (an alert is one per host, category and day)

_ROLLUP = RollupDaily.__table__  # type: ignore[attr-defined]
_USAGE = UsageDaily.__table__  # type: ignore[attr-defined]
_EVENT = DetectionEvent.__table__  # type: ignore[attr-defined]
_GATEWAY = rows.Gateway.__table__  # type: ignore[attr-defined]
_IOC = rows.Ioc.__table__  # type: ignore[attr-defined]
_TENANT = rows.Tenant.__table__  # type: ignore[attr-defined]
_SIGHTING = Sighting.__table__  # type: ignore[attr-defined]
_TENANT = rows.Tenant.__table__  # type: ignore[attr-defined]


def _day_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def tenant_name(conn: Connection, tenant_id: str) -> str:
    name = conn.execute(
        select(_TENANT.c.name).where(_TENANT.c.id == tenant_id, _TENANT.c.deleted_at_ms == 0)
    ).scalar()
    if name is None:
        raise NotFound("unknown tenant")
    return str(name)


def gateway_labels(conn: Connection, tenant_id: str) -> dict[str, str]:
    """id -> name of this tenant's gateways (a retired record by its former name)."""
    stmt = select(_GATEWAY.c.id, _GATEWAY.c.name, _GATEWAY.c.former_name).where(
        _GATEWAY.c.tenant_id == tenant_id)
    return {gid: former or name for gid, name, former in conn.execute(stmt)}


class _Labels:
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def __call__(self, gateway_id: str) -> str:
        # Telemetry of a gateway row purged since: still this tenant's (selected by tenant id).
        return self.names.get(gateway_id) or f"removed-{gateway_id[:8]}"


def _grouped(conn: Connection, tenant_id: str, metrics: list[str], start: int, end: int) -> list[Any]:
    stmt = (
        select(_ROLLUP.c.metric, _ROLLUP.c.gateway_id, _ROLLUP.c.dimension,
               func.sum(_ROLLUP.c.packets), func.sum(_ROLLUP.c.bytes), func.sum(_ROLLUP.c.count))
        .where(_ROLLUP.c.tenant_id == tenant_id, _ROLLUP.c.metric.in_(metrics),
               _ROLLUP.c.day_ms >= start, _ROLLUP.c.day_ms < end)
        .group_by(_ROLLUP.c.metric, _ROLLUP.c.gateway_id, _ROLLUP.c.dimension)
    )
    return list(conn.execute(stmt))


def _blocked_and_iocs(
    grouped: list[Any], label: _Labels
) -> tuple[tuple[BlockedDestination, ...], tuple[IndicatorHits, ...]]:
    blocked: dict[str, int] = defaultdict(int)
    blocked_hosts: dict[str, set[tuple[str, str]]] = defaultdict(set)
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # indicator -> [hits, bytes]
    ioc_hosts: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for metric, gid, dim, packets, nbytes, count in grouped:
        key, host = split_dimension(dim)
        if metric == DNS_BLOCKED:
            if int(count or 0) <= 0:
                continue
            blocked[key] += int(count)
            blocked_hosts[key].add((gid, host))
            hits[key][0] += int(count)  # a sinkholed query for it is a hit too
        elif metric == IOC_HITS:
            if int(packets or 0) <= 0 and int(nbytes or 0) <= 0:
                continue
            hits[key][0] += int(packets or 0)
            hits[key][1] += int(nbytes or 0)
        else:
            continue
        ioc_hosts[key].add((gid, host))
    top_blocked = sorted(blocked, key=lambda d: (-blocked[d], d))[:LIMIT]
    destinations = tuple(BlockedDestination(d, blocked[d], len(blocked_hosts[d])) for d in top_blocked)
    top_iocs = sorted(hits, key=lambda i: (-hits[i][0], -hits[i][1], i))[:LIMIT]
    indicators = []
    for ioc in top_iocs:
        hosts = sorted({HostRef(label(gid), host) for gid, host in ioc_hosts[ioc]},
                       key=lambda h: (h.gateway, h.address))[:LIMIT]
        indicators.append(IndicatorHits(ioc, hits[ioc][0], hits[ioc][1], tuple(hosts)))
    return destinations, tuple(indicators)


def _mark_alliance(conn: Connection, tenant_id: str,
                   iocs: tuple[IndicatorHits, ...]) -> tuple[IndicatorHits, ...]:
    """Flag the indicators a tenant in the alliance holds from the alliance channel alone. As the
    lists stand now: a past month's report reflects today's lists, not that month's."""
    shares = conn.execute(select(_TENANT.c.sharing).where(_TENANT.c.id == tenant_id)).scalar()
    if not iocs or not shares:
        return iocs
    held: dict[str, set[str]] = defaultdict(set)
    own = ("global", f"tenant:{tenant_id}", ALLIANCE_CHANNEL)
    for channel, value in conn.execute(select(_IOC.c.channel, _IOC.c.value).where(
            _IOC.c.value.in_([i.indicator for i in iocs]), _IOC.c.channel.in_(own))):
        held[value].add(channel)
    return tuple(replace(i, thanks_to_alliance=held.get(i.indicator) == {ALLIANCE_CHANNEL}) for i in iocs)


def _beacons(conn: Connection, tenant_id: str, start: int, end: int,
             label: _Labels) -> tuple[BeaconSuspect, ...]:
    """The tenant's own beacon sightings last seen in the period (gateway_agent/beacons/)."""
    rows = conn.execute(
        select(_SIGHTING.c.value, _SIGHTING.c.gateway_id, _SIGHTING.c.host, _SIGHTING.c.score,
               _SIGHTING.c.count, _SIGHTING.c.last_seen_ms)
        .where(_SIGHTING.c.tenant_id == tenant_id, _SIGHTING.c.via == "beacon",
               _SIGHTING.c.last_seen_ms >= start, _SIGHTING.c.last_seen_ms < end)
        .order_by(_SIGHTING.c.score.desc(), _SIGHTING.c.last_seen_ms.desc()).limit(LIMIT))
    return tuple(BeaconSuspect(value, HostRef(label(gid), host), int(score), int(count), int(seen))
                 for value, gid, host, score, count, seen in rows)


def _uploads(grouped: list[Any], label: _Labels) -> tuple[HostUpload, ...]:
    out = []
    for metric, gid, dim, _packets, nbytes, _count in grouped:
        if metric != CATEGORY_BYTES or int(nbytes or 0) <= 0:
            continue
        category, host = split_dimension(dim)
        out.append(HostUpload(category, HostRef(label(gid), host), int(nbytes)))
    out.sort(key=lambda u: (-u.bytes, u.category, u.host.gateway, u.host.address))
    return tuple(out[:LIMIT])


def _category_totals(grouped: list[Any]) -> dict[str, int]:
    """Bytes per category over the period (all gateways and hosts): the monthly summary's shares."""
    out: dict[str, int] = defaultdict(int)
    for metric, _gid, dim, _packets, nbytes, _count in grouped:
        if metric == CATEGORY_BYTES:
            out[split_dimension(dim)[0]] += int(nbytes or 0)
    return dict(out)


def _blocks_per_day(conn: Connection, tenant_id: str, first: str, start: int, end: int,
                    now: int) -> tuple[DayCount, ...]:
    stmt = (
        select(_ROLLUP.c.day_ms, func.sum(_ROLLUP.c.count))
        .where(_ROLLUP.c.tenant_id == tenant_id, _ROLLUP.c.metric == DNS_BLOCKED,
               _ROLLUP.c.day_ms >= start, _ROLLUP.c.day_ms < end)
        .group_by(_ROLLUP.c.day_ms)
    )
    per_day: dict[str, int] = defaultdict(int)
    for day_ms, count in conn.execute(stmt):
        per_day[_day_of(int(day_ms))] += int(count or 0)
    days = []
    day = datetime.strptime(first, "%Y-%m-%d").replace(tzinfo=UTC)
    while int(day.timestamp() * 1000) < min(end, now):  # every day begun so far, zeros included
        name = day.strftime("%Y-%m-%d")
        days.append(DayCount(name, per_day.get(name, 0)))
        day += timedelta(days=1)
    return tuple(days)


def _leak_alerts(conn: Connection, tenant_id: str, first: str, end_day: str, start: int, end: int,
                 label: _Labels) -> tuple[LeakAlert, ...]:
    stmt = (
        select(_EVENT.c.id, _EVENT.c.at_ms, _EVENT.c.gateway_id, _EVENT.c.host, _EVENT.c.subject,
               _EVENT.c.details)
        .where(_EVENT.c.tenant_id == tenant_id, _EVENT.c.at_ms >= start,
               _EVENT.c.at_ms < end + LEAK_GRACE_MS, _EVENT.c.kind == AlertKind.UPLOAD_THRESHOLD.value)
        .order_by(_EVENT.c.at_ms, _EVENT.c.id)
        .limit(_LEAK_SCAN)
    )
    out = []
    for eid, at_ms, gid, host, category, raw in conn.execute(stmt):
        try:
            details = json.loads(raw)
        except ValueError:
            details = {}
        if not isinstance(details, dict):
            details = {}
        day = str(details.get("day") or _day_of(int(at_ms)))
        if not first <= day < end_day:  # about another month (raised late, or early next month)
            continue
        out.append(LeakAlert(id=eid, at_ms=int(at_ms), gateway=label(gid), host=host, category=category,
                             bytes=int(details.get("bytes", 0) or 0),
                             threshold=int(details.get("threshold", 0) or 0)))
    out.sort(key=lambda a: (-a.bytes, a.at_ms, a.id))
    return tuple(out[:LIMIT])


def _offline(conn: Connection, tenant_id: str, first: str, end_day: str, start: int, end: int,
             now: int) -> tuple[GatewayOffline, ...]:
    """Per gateway enrolled during the period: time from max(period start, enrollment) to
    min(period end, now, revocation) not covered by its telemetry."""
    stmt = select(_USAGE.c.gateway_id, func.sum(_USAGE.c.online)).where(
        _USAGE.c.tenant_id == tenant_id, _USAGE.c.day >= first, _USAGE.c.day < end_day,
    ).group_by(_USAGE.c.gateway_id)
    online = {gid: int(s or 0) for gid, s in conn.execute(stmt)}
    gateways = conn.execute(
        select(_GATEWAY.c.id, _GATEWAY.c.name, _GATEWAY.c.former_name, _GATEWAY.c.enrolled_at_ms,
               _GATEWAY.c.revoked_at_ms)
        .where(_GATEWAY.c.tenant_id == tenant_id, _GATEWAY.c.enrolled_at_ms > 0,
               _GATEWAY.c.enrolled_at_ms < end)
    )
    out = []
    for gid, name, former, enrolled, revoked in gateways:
        stop = min(end, now, int(revoked) or end)
        begin = max(start, int(enrolled))
        if stop <= begin:
            continue  # revoked before the period, or enrolled after now
        seconds = (stop - begin) // 1000
        up = online.get(gid, 0)
        out.append(GatewayOffline(gid, former or name, up, max(0, seconds - up)))
    out.sort(key=lambda g: (-g.offline_seconds, g.gateway, g.gateway_id))
    return tuple(out[:LIMIT])


def security_report(
    db: Database, tenant_id: str, period: str, *, now_ms: int | None = None
) -> SecurityReport:
    """The tenant's month: NotFound for an unknown (or deleted) tenant, InvalidInput for a bad period."""
    return report_and_category_totals(db, tenant_id, period, now_ms=now_ms)[0]


def report_and_category_totals(
    db: Database, tenant_id: str, period: str, *, now_ms: int | None = None
) -> tuple[SecurityReport, dict[str, int]]:
    """The security report and the bytes per category (for the monthly summary) from one read."""
    first, end_day, start, end = period_bounds(period)
    now = clock_ms() if now_ms is None else now_ms
    with db.read_engine.connect() as conn:  # one transaction: one consistent snapshot on SQLite
        name = tenant_name(conn, tenant_id)
        label = _Labels(gateway_labels(conn, tenant_id))
        grouped = _grouped(conn, tenant_id, [DNS_BLOCKED, IOC_HITS, CATEGORY_BYTES], start, end)
        top_blocked, iocs = _blocked_and_iocs(grouped, label)
        iocs = _mark_alliance(conn, tenant_id, iocs)
        report = SecurityReport(
            tenant_id=tenant_id, tenant=name, period=first[:7],
            top_blocked=top_blocked, ioc_hits=iocs, uploads=_uploads(grouped, label),
            leak_alerts=_leak_alerts(conn, tenant_id, first, end_day, start, end, label),
            offline=_offline(conn, tenant_id, first, end_day, start, end, now),
            blocks_per_day=_blocks_per_day(conn, tenant_id, first, start, end, now),
            beacon_suspects=_beacons(conn, tenant_id, start, end, label),
        )
    return report, _category_totals(grouped)
