"""The monthly report as HTML and PDF: one Jinja2 template for both, the PDF made by WeasyPrint from
that same HTML, so the two can never disagree.

A closed period (a `billing_period` row exists) never changes, so its rendering is stored in
`report_cache` on first request and served from there afterwards (rendering a PDF takes about a
second; serving it is one row read). An open period is rendered on every request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from controller.domain.reporting import HostRef
from controller.reports import charts
from controller.reports.monthly import (
    MonthlyReport,
    UsageSource,
    category_label,
    host_label,
    human_duration,
    monthly_report,
)
from controller.reports.security import LIMIT, tenant_name
from controller.store.account_models import BillingPeriod, ReportCache
from controller.store.db import Database
from controller.telemetry.queries import parse_period
from mssp.common.clock import now_ms as clock_ms

TEMPLATES = Path(__file__).resolve().parent / "templates"
HTML_KIND, PDF_KIND = "monthly.html", "monthly.pdf"

_ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                   trim_blocks=False, lstrip_blocks=False)
_BILLING_PERIOD = BillingPeriod.__table__  # type: ignore[attr-defined]
_CACHE = ReportCache.__table__  # type: ignore[attr-defined]


def _num(value: Decimal | int) -> str:
    d = Decimal(value)
    return format(d.normalize() if d == d.to_integral_value() else d, "f")


def _money(value: Decimal | int) -> str:
    return f"{Decimal(value):,.2f}"


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _context(r: MonthlyReport) -> dict[str, Any]:
    sec = r.security
    return {
        "r": r,
        "period_label": datetime.strptime(sec.period, "%Y-%m").strftime("%B %Y"),
        "generated": _when(r.generated_at_ms) + " UTC",
        "attempts": sum(i.hits for i in sec.ioc_hits),
        "blocked_total": sum(d.value for d in sec.blocks_per_day),
        "limit": LIMIT,
        "charts": {  # matplotlib's own SVG markup: trusted, our labels are escaped by matplotlib
            "egress": Markup(charts.egress_per_day(r.usage.daily)),
            "uploads": Markup(charts.uploads_per_category(
                [(category_label(c), n) for c, n in r.category_bytes])),
            "blocks": Markup(charts.blocks_per_day(sec.blocks_per_day)),
            "destinations": Markup(charts.top_destinations(sec.top_blocked)),
        },
        "bytes": charts.human_bytes, "duration": human_duration, "category": category_label,
        "host": lambda h: host_label(h) if isinstance(h, HostRef) else str(h),
        "num": _num, "money": _money, "when": _when,
    }


def render_html(report: MonthlyReport) -> str:
    return _ENV.get_template("monthly.html.j2").render(_context(report))


def _no_fetch(url: str, *_args: Any, **_kwargs: Any) -> NoReturn:
    """The report is self-contained: any URL it would load is a bug, never a network request."""
    raise ValueError(f"the report must not load {url[:80]!r}")


def html_to_pdf(html: str) -> bytes:
    from weasyprint import HTML  # heavy import (pango): only where a PDF is made

    pdf = HTML(string=html, url_fetcher=_no_fetch).write_pdf()
    assert pdf is not None
    return bytes(pdf)


def warm_up() -> None:
    """Load the PDF stack (WeasyPrint, Pango, fonts; matplotlib came with `charts`) once at start-up,
    so a tenant's first report does not pay a second or so of imports and font discovery."""
    html_to_pdf(f"<p>warm-up</p>{charts.blocks_per_day([])}")


def is_closed(db: Database, period: str) -> bool:
    with db.read_engine.connect() as conn:
        return conn.execute(
            select(_BILLING_PERIOD.c.period).where(_BILLING_PERIOD.c.period == period)
        ).first() is not None


def cached_body(db: Database, tenant_id: str, period: str, kind: str) -> bytes | None:
    with db.read_engine.connect() as conn:
        body = conn.execute(select(_CACHE.c.body).where(
            _CACHE.c.tenant_id == tenant_id, _CACHE.c.period == period, _CACHE.c.kind == kind)).scalar()
    return None if body is None else bytes(body)


def _cached(db: Database, tenant_id: str, period: str, kind: str, render: Callable[[], bytes]) -> bytes:
    """Closed period: the stored rendering, made and stored on first request (a concurrent first
    request that stored it before us wins: both then serve the same bytes)."""
    if not is_closed(db, period):
        return render()
    body = cached_body(db, tenant_id, period, kind)
    if body is not None:
        return body
    body = render()
    try:
        with db.session() as s:
            s.add(ReportCache(tenant_id=tenant_id, period=period, kind=kind, created_at_ms=clock_ms(),
                              body=body))
    except IntegrityError:
        stored = cached_body(db, tenant_id, period, kind)
        if stored is not None:
            return stored
    return body


def _checked(db: Database, tenant_id: str, period: str) -> str:
    """The canonical period; NotFound for an unknown tenant even when a rendering is cached."""
    first, _end = parse_period(period)
    with db.read_engine.connect() as conn:
        tenant_name(conn, tenant_id)
    return first[:7]


def _html(db: Database, billing: UsageSource, tenant_id: str, period: str, now_ms: int | None) -> str:
    """The HTML report of a `_checked` period (cached when closed)."""
    def render() -> bytes:
        return render_html(monthly_report(db, billing, tenant_id, period, now_ms=now_ms)).encode()

    return _cached(db, tenant_id, period, HTML_KIND, render).decode()


def monthly_html(db: Database, billing: UsageSource, tenant_id: str, period: str, *,
                 now_ms: int | None = None) -> str:
    return _html(db, billing, tenant_id, _checked(db, tenant_id, period), now_ms)


def monthly_pdf(db: Database, billing: UsageSource, tenant_id: str, period: str, *,
                now_ms: int | None = None) -> bytes:
    """The PDF of exactly the HTML report (for a closed period: of its cached HTML)."""
    period = _checked(db, tenant_id, period)
    return _cached(db, tenant_id, period, PDF_KIND,
                   lambda: html_to_pdf(_html(db, billing, tenant_id, period, now_ms)))
