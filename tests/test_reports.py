"""The tenant's reports on known telemetry fed through the real ingest: the security report equals
hand-computed figures on SQLite and PostgreSQL, another tenant's data (same gateway names, same LAN
addresses) never appears, the monthly PDF holds the summary figures and closed periods are cached."""

from __future__ import annotations

import io
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import update
from sqlmodel import select

from controller.domain.errors import InvalidInput, NotFound
from controller.domain.reporting import ChargeLine, DailyUsage, HostRef, UsageStatement
from controller.reports import render
from controller.reports.monthly import monthly_report
from controller.reports.security import security_report
from controller.service import ControllerService
from controller.services.billing import Billing
from controller.store import models as rows
from controller.store.account_models import BillingPeriod, ReportCache
from controller.store.db import Database
from controller.telemetry.ingest import ingest
from mssp.common.metrics import CATEGORY_BYTES, DNS_BLOCKED, DNS_QUERIES, HOST_EGRESS, IOC_HITS
from tests.support.telemetry_batches import make_batch

PERIOD = "2025-03"
T0 = int(datetime(2025, 3, 1, tzinfo=UTC).timestamp() * 1000)
APRIL = int(datetime(2025, 4, 1, tzinfo=UTC).timestamp() * 1000)
H, D = 3_600_000, 86_400_000
LIMIT_BYTES = 1_000_000_000
GB = 1_000_000_000


@dataclass
class Seeded:
    acme: str
    globex: str
    gw: dict[tuple[str, str], str] = field(default_factory=dict)  # (tenant, gateway name) -> id


def _enroll(svc: ControllerService, tenant: str, name: str) -> str:
    gateway, secret, _ = svc.add_gateway(tenant, name)
    ticket = svc.redeem_enrollment_token(secret)
    serial = uuid.uuid4().hex
    svc.complete_enrollment(ticket.gateway_id, cert_serial=serial, nats_public_key="U" + serial,
                            agent_version="1.0")
    return gateway.id


def _batch(gid: str, tid: str, seq: int, start_ms: int, seconds: int,
           records: list[tuple[str, str, int, int, int]]) -> Any:
    return make_batch(gid, seq, records, tenant=tid, end_ms=start_ms + seconds * 1000, period_s=seconds)


def seed(db: Database) -> Seeded:
    """Two tenants with the same gateway names and LAN addresses; acme's figures are in EXPECTED."""
    svc = ControllerService(db)
    out = Seeded(acme=svc.create_tenant("acme").id, globex=svc.create_tenant("globex").id)
    enrolled = {"hq": T0 - 28 * D, "branch": T0 + 15 * D, "lab": T0 + 9 * D}
    for tenant in ("acme", "globex"):
        for name in ("hq", "branch", "lab") if tenant == "acme" else ("hq", "branch"):
            out.gw[(tenant, name)] = gid = _enroll(svc, tenant, name)
            with db.session() as s:  # enrolled in the past: the fixture's month is a past one
                s.exec(update(rows.Gateway).where(rows.Gateway.id == gid)  # type: ignore[call-overload]
                       .values(enrolled_at_ms=enrolled[name]))
    a, g = out.acme, out.globex
    hq, branch, lab = out.gw[("acme", "hq")], out.gw[("acme", "branch")], out.gw[("acme", "lab")]
    limits = {a: [("cloud_storage", LIMIT_BYTES), ("ai_tools", LIMIT_BYTES)],
              g: [("cloud_storage", LIMIT_BYTES)]}

    def feed(batches: list[Any], now: int) -> None:
        ingest(db, batches, lambda t: limits.get(t, []), now_ms=now)

    feed([_batch(hq, a, 1, T0 + 4 * D + 10 * H, 3600, [
        (DNS_BLOCKED, "evil.test|192.0.2.10", 0, 0, 5), (DNS_BLOCKED, "ads.test|192.0.2.11", 0, 0, 2),
        (DNS_QUERIES, "evil.test|192.0.2.10", 0, 0, 40), (IOC_HITS, "203.0.113.66|192.0.2.10", 4, 400, 0),
        (CATEGORY_BYTES, "cloud_storage|192.0.2.10", 100, 1_680_000_000, 0),
        (CATEGORY_BYTES, "cloud_storage|192.0.2.11", 10, 320_000_000, 0),
        (HOST_EGRESS, "192.0.2.10", 1000, 2 * GB, 0),
    ])], T0 + 4 * D + 11 * H + 5000)
    feed([
        _batch(hq, a, 2, T0 + 19 * D + 8 * H, 3600, [
            (DNS_BLOCKED, "evil.test|192.0.2.11", 0, 0, 3),
            (CATEGORY_BYTES, "ai_tools|192.0.2.12", 5, 40_000_000, 0)]),
        _batch(branch, a, 1, T0 + 19 * D + 9 * H, 1800, [
            (DNS_BLOCKED, "evil.test|192.0.2.10", 0, 0, 1), (IOC_HITS, "203.0.113.66|192.0.2.10", 1, 60, 0),
            (CATEGORY_BYTES, "cloud_storage|192.0.2.10", 8, 100_000_000, 0)]),
        _batch(lab, a, 1, T0 + 11 * D, 3600, [(IOC_HITS, "198.51.100.7|192.0.2.30", 2, 200, 0)]),
    ], T0 + 20 * D)
    # Outside the month: the hour before it and the first hour after it (its alert too).
    feed([_batch(hq, a, 3, T0 - H, 3600, [(DNS_BLOCKED, "evil.test|192.0.2.10", 0, 0, 100),
                                          (CATEGORY_BYTES, "cloud_storage|192.0.2.10", 1, 5 * GB, 0)])],
         T0 - H // 2)
    feed([_batch(hq, a, 4, APRIL, 3600, [(DNS_BLOCKED, "evil.test|192.0.2.10", 0, 0, 100),
                                         (IOC_HITS, "203.0.113.66|192.0.2.10", 50, 5000, 0),
                                         (CATEGORY_BYTES, "cloud_storage|192.0.2.10", 1, 3 * GB, 0)])],
         APRIL + 2 * H)
    # March 31's telemetry folded (and its alert raised) in April: the alert is about March.
    feed([_batch(hq, a, 5, APRIL - 2 * H, 3600,
                 [(CATEGORY_BYTES, "ai_tools|192.0.2.13", 9, 1_960_000_000, 0)])], APRIL + H)
    # The other tenant: same gateway names and LAN addresses, one shared indicator, bigger figures.
    ghq, gbranch = out.gw[("globex", "hq")], out.gw[("globex", "branch")]
    feed([
        _batch(ghq, g, 1, T0 + 4 * D + 10 * H, 3600, [
            (DNS_BLOCKED, "evil.test|192.0.2.10", 0, 0, 1000),
            (DNS_BLOCKED, "globex-only.test|192.0.2.10", 0, 0, 7),
            (IOC_HITS, "203.0.113.99|192.0.2.10", 9, 900, 0),
            (IOC_HITS, "203.0.113.66|192.0.2.10", 500, 5000, 0),
            (CATEGORY_BYTES, "cloud_storage|192.0.2.10", 1, 9 * GB, 0)]),
        _batch(gbranch, g, 1, T0 + 5 * D, 3600, [(CATEGORY_BYTES, "ai_tools|192.0.2.99", 1, 77_777, 0)]),
    ], T0 + 5 * D + 2 * H)
    svc.delete_gateway("acme", "lab")  # retired: its history keeps the name it had
    return out


def acme_expected(s: Seeded) -> dict[str, Any]:
    hq, branch, lab = s.gw[("acme", "hq")], s.gw[("acme", "branch")], s.gw[("acme", "lab")]
    return {
        "top_blocked": [("evil.test", 9, 3), ("ads.test", 2, 1)],
        "ioc_hits": [
            ("evil.test", 9, 0, [("branch", "192.0.2.10"), ("hq", "192.0.2.10"), ("hq", "192.0.2.11")]),
            ("203.0.113.66", 5, 460, [("branch", "192.0.2.10"), ("hq", "192.0.2.10")]),
            ("198.51.100.7", 2, 200, [("lab", "192.0.2.30")]),
            ("ads.test", 2, 0, [("hq", "192.0.2.11")]),
        ],
        "uploads": [
            ("ai_tools", "hq", "192.0.2.13", 1_960_000_000),
            ("cloud_storage", "hq", "192.0.2.10", 1_680_000_000),
            ("cloud_storage", "hq", "192.0.2.11", 320_000_000),
            ("cloud_storage", "branch", "192.0.2.10", 100_000_000),
            ("ai_tools", "hq", "192.0.2.12", 40_000_000),
        ],
        "leaks": [("hq", "192.0.2.13", "ai_tools", 1_960_000_000, LIMIT_BYTES, APRIL + H),
                  ("hq", "192.0.2.10", "cloud_storage", 1_680_000_000, LIMIT_BYTES,
                   T0 + 4 * D + 11 * H + 5000)],
        # period seconds from max(start, enrolled) to the period end, minus the seconds batches cover
        "offline": [(hq, "hq", 10_800, 31 * 86_400 - 10_800), (lab, "lab", 3600, 22 * 86_400 - 3600),
                    (branch, "branch", 1800, 16 * 86_400 - 1800)],
        "blocks": {"2025-03-05": 7, "2025-03-20": 4},
    }


def check_acme(report: Any, s: Seeded) -> None:
    want = acme_expected(s)
    assert report.tenant_id == s.acme and report.tenant == "acme" and report.period == PERIOD
    assert [(d.domain, d.blocked, d.hosts) for d in report.top_blocked] == want["top_blocked"]
    assert [(i.indicator, i.hits, i.bytes, [(h.gateway, h.address) for h in i.hosts])
            for i in report.ioc_hits] == want["ioc_hits"]
    assert [(u.category, u.host.gateway, u.host.address, u.bytes) for u in report.uploads] == want["uploads"]
    assert [(a.gateway, a.host, a.category, a.bytes, a.threshold, a.at_ms)
            for a in report.leak_alerts] == want["leaks"]
    assert [(g.gateway_id, g.gateway, g.online_seconds, g.offline_seconds)
            for g in report.offline] == want["offline"]
    assert len(report.blocks_per_day) == 31 and report.blocks_per_day[0].day == "2025-03-01"
    assert {d.day: d.value for d in report.blocks_per_day if d.value} == want["blocks"]


def test_security_report_equals_hand_computed_figures(db: Database) -> None:
    s = seed(db)
    report = security_report(db, s.acme, PERIOD)
    check_acme(report, s)
    # Nothing of the other tenant: not its indicators, not its gateways' ids, not its counts.
    text = repr(report)
    for foreign in ("globex", "203.0.113.99", "globex-only.test", "192.0.2.99",
                    s.globex, s.gw[("globex", "hq")], s.gw[("globex", "branch")]):
        assert foreign not in text
    other = security_report(db, s.globex, PERIOD)
    assert [(d.domain, d.blocked, d.hosts) for d in other.top_blocked] == [("evil.test", 1000, 1),
                                                                          ("globex-only.test", 7, 1)]
    assert [(i.indicator, i.hits, i.bytes) for i in other.ioc_hits] == [
        ("evil.test", 1000, 0), ("203.0.113.66", 500, 5000), ("203.0.113.99", 9, 900),
        ("globex-only.test", 7, 0)]
    assert {h for i in other.ioc_hits for h in i.hosts} == {HostRef("hq", "192.0.2.10")}
    assert [(a.gateway, a.host, a.bytes) for a in other.leak_alerts] == [("hq", "192.0.2.10", 9 * GB)]
    assert [g.gateway for g in other.offline] == ["hq", "branch"]
    acme_ids = [s.acme, *(s.gw[("acme", n)] for n in ("hq", "branch", "lab"))]
    for own in ("'lab'", "198.51.100.7", "ads.test", "192.0.2.13", *acme_ids):
        assert own not in repr(other)


def test_security_report_edges(db: Database) -> None:
    s = seed(db)
    with pytest.raises(NotFound):
        security_report(db, "no-such-tenant", PERIOD)
    with pytest.raises(InvalidInput):
        security_report(db, s.acme, "2025-3")
    feb = security_report(db, s.acme, "2025-02")  # the hour before March: blocked 100, 5 GB uploaded
    assert [(d.domain, d.blocked) for d in feb.top_blocked] == [("evil.test", 100)]
    assert [(u.category, u.bytes) for u in feb.uploads] == [("cloud_storage", 5 * GB)]
    assert [(a.category, a.bytes) for a in feb.leak_alerts] == [("cloud_storage", 5 * GB)]
    # An open month seen "now": days up to now only, offline time only up to now.
    now = T0 + 10 * D + 12 * H
    half = security_report(db, s.acme, PERIOD, now_ms=now)
    assert len(half.blocks_per_day) == 11
    hq = next(g for g in half.offline if g.gateway == "hq")
    assert (hq.online_seconds, hq.offline_seconds) == (10_800, (now - T0) // 1000 - 10_800)
    assert [g.gateway for g in half.offline] == ["hq", "lab"]  # branch is enrolled on the 16th


class FakeBilling:
    """Stands in for controller/services/billing.Billing with a fixed statement."""

    def __init__(self) -> None:
        self.calls = 0

    def usage(self, tenant_id: str, period: str) -> UsageStatement:
        self.calls += 1
        line = ChargeLine(id=f"{tenant_id}:{period}:base", tenant_id=tenant_id, tenant="acme", period=period,
                          plan="standard", meter="base", description="Standard plan", quantity=Decimal(1),
                          included=Decimal(0), billable=Decimal(1), unit_price=Decimal("49.00"),
                          amount=Decimal("49.00"), currency="EUR")
        daily = tuple(DailyUsage(f"2025-03-{d:02d}", 2, (d % 4) * 10**8) for d in range(1, 32))
        return UsageStatement(
            tenant_id=tenant_id, tenant="acme", period=period, closed=False, plan="standard", currency="EUR",
            gateway_days=62, egress_bytes=2 * GB, included_gateway_days=93, included_egress_bytes=100 * GB,
            lines=(line,), total=Decimal("49.00"), daily=daily)


SUMMARY = [
    "4 devices tried to reach known attacker servers (18 attempts, all blocked).",
    "2.1 GB went to cloud storage, 80% from one device (192.0.2.10 at hq); "
    "2.0 GB went to AI tools, 98% from one device (192.0.2.13 at hq).",
    "2 data-leak alerts; the largest: 192.0.2.13 at hq sent 2.0 GB to AI tools in one day (limit 1.0 GB).",
    "hq was offline for 30 d 21 h (2 more gateways offline for an hour or more).",
    "2.0 GB of internet traffic over 62 gateway-days; amount due 49.00 EUR.",
]


def test_monthly_summary_in_plain_words(db: Database) -> None:
    s = seed(db)
    report = monthly_report(db, FakeBilling(), s.acme, PERIOD)
    assert list(report.summary) == SUMMARY
    assert report.category_bytes == (("cloud_storage", 2_100_000_000), ("ai_tools", 2_000_000_000))


def _pdf_text(pdf: bytes) -> str:
    pages = PdfReader(io.BytesIO(pdf)).pages
    return re.sub(r"\s+", " ", " ".join(page.extract_text() or "" for page in pages))


def test_monthly_html_and_pdf_hold_the_figures(tmp_path: Any) -> None:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.upgrade()
    s = seed(db)
    billing = FakeBilling()
    html = render.monthly_html(db, billing, s.acme, PERIOD)
    assert html.index("In short") < html.index("<svg") < html.index("Known attacker servers")
    assert html.count("<svg") == 4 and "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", html)  # self-contained
    assert "@import" not in html and "url(" not in html.replace("url(#", "")
    for sentence in SUMMARY:
        assert sentence.replace("'", "&#39;") in html
    assert "globex" not in html and "203.0.113.99" not in html
    pdf = render.monthly_pdf(db, billing, s.acme, PERIOD)
    assert pdf.startswith(b"%PDF")
    text = _pdf_text(pdf)
    for figure in ("4 devices tried to reach known attacker servers", "18 attempts",
                   "2.1 GB went to cloud storage", "80% from one device", "2 data-leak alerts", "30 d 21 h",
                   "49.00 EUR", "evil.test", "203.0.113.66", "198.51.100.7", "1.7 GB"):
        assert figure in text, figure
    # An open period is rendered every time: nothing cached, billing asked again.
    with db.session(readonly=True) as session:
        assert session.exec(select(ReportCache)).all() == []
    calls = billing.calls
    render.monthly_html(db, billing, s.acme, PERIOD)
    assert billing.calls == calls + 1
    db.dispose()


def test_closed_period_is_served_from_the_cache(db: Database) -> None:
    s = seed(db)
    with db.session() as session:
        session.add(BillingPeriod(period=PERIOD, closed_at_ms=APRIL + D, plans="{}"))
    billing = FakeBilling()
    first = render.monthly_pdf(db, billing, s.acme, PERIOD)
    calls = billing.calls
    assert calls == 1  # the PDF is made from the (now cached) HTML: one rendering
    with db.session(readonly=True) as session:
        cached = {(c.tenant_id, c.period, c.kind): c.body for c in session.exec(select(ReportCache))}
    assert set(cached) == {(s.acme, PERIOD, "monthly.html"), (s.acme, PERIOD, "monthly.pdf")}
    assert cached[(s.acme, PERIOD, "monthly.pdf")] == first
    # Late telemetry changes nothing in a closed month's report: it is not rendered again.
    ingest(db, [_batch(s.gw[("acme", "hq")], s.acme, 9, T0 + 2 * D, 60,
                       [(DNS_BLOCKED, "late.test|192.0.2.10", 0, 0, 1)])])
    second = render.monthly_pdf(db, billing, s.acme, PERIOD)
    assert second == first and billing.calls == calls
    html = render.monthly_html(db, billing, s.acme, PERIOD)
    assert html.encode() == cached[(s.acme, PERIOD, "monthly.html")] and "late.test" not in html
    assert billing.calls == calls
    # The cache is per tenant: globex's report is its own.
    other = render.monthly_html(db, billing, s.globex, PERIOD)
    assert "globex-only.test" in other and "198.51.100.7" not in other
    with pytest.raises(NotFound):
        render.monthly_html(db, billing, "no-such-tenant", PERIOD)


def test_monthly_report_with_the_real_billing(db: Database, tmp_path: Any) -> None:
    """The usage part from controller/services/billing.Billing (default plans), closed by billing."""
    s = seed(db)
    billing = Billing(db, tmp_path / "no-plans.yaml")
    billing.close(PERIOD, at_ms=APRIL + D)
    usage = billing.usage(s.acme, PERIOD)
    assert usage.closed and (usage.gateway_days, usage.egress_bytes) == (5, 2 * GB)  # hq 3, branch 1, lab 1
    pdf = render.monthly_pdf(db, billing, s.acme, PERIOD)
    text = _pdf_text(pdf)
    assert "2.0 GB of internet traffic over 5 gateway-days" in text
    assert f"amount due {usage.total:,.2f} {usage.currency}" in text
    assert "closed period" in text
    assert render.monthly_pdf(db, billing, s.acme, PERIOD) == pdf  # served from the cache


def test_security_report_says_what_the_alliance_blocked(db: Database) -> None:
    s = seed(db)
    svc = ControllerService(db)
    svc.add_ioc("203.0.113.66", "alliance")  # the alliance alone holds it
    svc.add_ioc("203.0.113.99", "alliance")
    svc.add_ioc("203.0.113.99", "tenant:globex")  # globex holds it itself too
    outside = security_report(db, s.globex, PERIOD)  # globex does not share: nothing reached it so
    assert not any(i.thanks_to_alliance for i in outside.ioc_hits)
    svc.set_sharing("globex", True)
    report = security_report(db, s.globex, PERIOD)
    flagged = {i.indicator: i.thanks_to_alliance for i in report.ioc_hits}
    assert flagged == {"evil.test": False, "203.0.113.66": True, "203.0.113.99": False,
                       "globex-only.test": False}
    html = render.render_html(monthly_report(db, FakeBilling(), s.globex, PERIOD))
    assert html.count("blocked thanks to the alliance") == 1
