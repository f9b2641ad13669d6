"""The data of the monthly report: the security report, the usage statement (from billing) and a
summary in plain words computed from those figures, for a small-business owner with two minutes.

The sentences say what happened and who did it, with human units ("2.1 GB went to cloud storage,
80% from one device (192.0.2.10 at hq)"); the tables below them in the report hold the exact figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from controller.domain.reporting import HostRef, SecurityReport, UsageStatement
from controller.reports.charts import human_bytes
from controller.reports.security import LIMIT, report_and_category_totals
from controller.store.db import Database
from mssp.common.clock import now_ms as clock_ms

_LABELS = {"ai_tools": "AI tools", "ai-tools": "AI tools"}
NOTABLE_OFFLINE_S = 3600  # less than an hour offline in a month is not worth a sentence


class UsageSource(Protocol):
    """What the report needs from billing (controller/services/billing.Billing)."""

    def usage(self, tenant_id: str, period: str) -> UsageStatement: ...


@dataclass(frozen=True)
class MonthlyReport:
    security: SecurityReport
    usage: UsageStatement
    summary: tuple[str, ...]
    category_bytes: tuple[tuple[str, int], ...]  # (category, bytes) over all hosts, biggest first
    generated_at_ms: int


def category_label(name: str) -> str:
    """'cloud_storage' -> 'cloud storage' (the words a person uses)."""
    return _LABELS.get(name) or name.replace("_", " ").replace("-", " ")


def host_label(host: HostRef) -> str:
    return f"{host.address} at {host.gateway}" if host.address else host.gateway


def human_duration(seconds: int) -> str:
    days, rest = divmod(max(0, int(seconds)), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _attackers(report: SecurityReport) -> str:
    devices = {h for i in report.ioc_hits for h in i.hosts}
    attempts = sum(i.hits for i in report.ioc_hits)
    if not devices:
        return "No device tried to reach a known attacker server."
    return (f"{_plural(len(devices), 'device')} tried to reach known attacker servers "
            f"({_plural(attempts, 'attempt')}, all blocked).")


def _uploads(report: SecurityReport, totals: tuple[tuple[str, int], ...]) -> str:
    parts = []
    for category, total in totals[:2]:
        text = f"{human_bytes(total)} went to {category_label(category)}"
        hosts = [u for u in report.uploads if u.category == category]
        if hosts and total > 0:
            top = hosts[0]  # uploads are biggest first
            share = round(100 * top.bytes / total)
            if top.bytes == total:
                text += f", all from one device ({host_label(top.host)})"
            elif share >= 20:
                text += f", {share}% from one device ({host_label(top.host)})"
        parts.append(text)
    if not parts:
        return "Nothing was uploaded to cloud storage, AI tools or other watched categories."
    return "; ".join(parts) + "."


def _leaks(report: SecurityReport) -> str:
    alerts = report.leak_alerts
    if not alerts:
        return "No data-leak alert: no device went over a daily upload limit."
    worst = alerts[0]  # biggest first
    where = f"{worst.host} at {worst.gateway}" if worst.host else worst.gateway
    detail = (f"{where} sent {human_bytes(worst.bytes)} to {category_label(worst.category)} in one day "
              f"(limit {human_bytes(worst.threshold)})")
    if len(alerts) == 1:
        return f"1 data-leak alert: {detail}."
    return f"{len(alerts)} data-leak alerts; the largest: {detail}."


def _offline(report: SecurityReport) -> str:
    notable = [g for g in report.offline if g.offline_seconds >= NOTABLE_OFFLINE_S]
    if not report.offline:
        return ""
    if not notable:
        return "Every gateway was online all month."
    worst = notable[0]  # most offline first
    text = f"{worst.gateway} was offline for {human_duration(worst.offline_seconds)}"
    if len(notable) > 1:
        more = _plural(len(notable) - 1, "more gateway")
        text += f" ({more} offline for an hour or more)"
    return text + "."


def _usage(usage: UsageStatement) -> str:
    text = (f"{human_bytes(usage.egress_bytes)} of internet traffic over "
            f"{_plural(usage.gateway_days, 'gateway-day')}")
    return f"{text}; amount due {usage.total:,.2f} {usage.currency}."


def summarize(report: SecurityReport, usage: UsageStatement,
              totals: tuple[tuple[str, int], ...]) -> tuple[str, ...]:
    """The plain-words summary: attackers, uploads, leak alerts, offline time, usage."""
    sentences = [_attackers(report), _uploads(report, totals), _leaks(report), _offline(report),
                 _usage(usage)]
    return tuple(s for s in sentences if s)


def monthly_report(
    db: Database, billing: UsageSource, tenant_id: str, period: str, *, now_ms: int | None = None
) -> MonthlyReport:
    now = clock_ms() if now_ms is None else now_ms
    report, per_category = report_and_category_totals(db, tenant_id, period, now_ms=now)
    usage = billing.usage(tenant_id, report.period)
    totals = tuple(sorted(((c, n) for c, n in per_category.items() if n > 0),
                          key=lambda cn: (-cn[1], cn[0]))[:LIMIT])
    return MonthlyReport(security=report, usage=usage, summary=summarize(report, usage, totals),
                         category_bytes=totals, generated_at_ms=now)
