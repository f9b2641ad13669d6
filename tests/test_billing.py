"""Billing with hand-computed figures: real telemetry through the real ingest, a plans file, exact
Decimal lines; closing freezes a month (prices changed later do not touch it), late telemetry becomes
an adjustment in the next open month and is billed once; closing is one-time under concurrency."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from controller.billing.charges import cents, gigabytes
from controller.billing.plans import load_plans
from controller.domain.errors import Conflict, InvalidInput
from controller.services.billing import Billing
from controller.services.tenants import Tenants
from controller.store.account_models import BillingLine, BillingPeriod, BillingUsage
from controller.store.db import Database
from controller.telemetry.ingest import ingest
from mssp.common.metrics import HOST_EGRESS
from tests.support.telemetry_batches import make_batch

PLANS = """\
currency: EUR
plans:
  standard:
    monthly_fee: "10.00"
    included_gateways: 1
    included_egress_gb: "1"
    gateway_day_price: "0.50"
    egress_gb_price: "0.97"
  enterprise:
    monthly_fee: "100"
    included_gateways: 10
    included_egress_gb: "1000"
    gateway_day_price: "0.10"
    egress_gb_price: "0.01"
"""
SEP, OCT, NOV = "2025-09", "2025-10", "2025-11"  # 30, 31 and 30 days; long over


def noon(day: str) -> int:
    d = dt.date.fromisoformat(day)
    return int(dt.datetime(d.year, d.month, d.day, 12, tzinfo=dt.UTC).timestamp() * 1000)


class Feed:
    """Batches through the real ingest; a unique seq per gateway."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.seq: dict[str, int] = {}

    def day(self, tenant: str, gateway: str, day: str, nbytes: int = 0) -> None:
        seq = self.seq[gateway] = self.seq.get(gateway, 0) + 1
        records = [(HOST_EGRESS, "192.0.2.10", 1, nbytes, 0)]
        ingest(self.db, [make_batch(gateway, seq, records, tenant=tenant, end_ms=noon(day))])

    def month(self, tenant: str, gateway: str, period: str, days: int, nbytes_per_day: int = 0) -> None:
        for d in range(1, days + 1):
            self.day(tenant, gateway, f"{period}-{d:02d}", nbytes_per_day)


@pytest.fixture
def plans(tmp_path: Path) -> Path:
    path = tmp_path / "plans.yaml"
    path.write_text(PLANS)
    return path


def setup_tenants(db: Database) -> tuple[str, str]:
    tenants = Tenants(db)
    return tenants.create_tenant("acme").id, tenants.create_tenant("beta").id


def by_meter(lines: list | tuple) -> dict[str, tuple[Decimal, Decimal, Decimal, Decimal, Decimal]]:
    return {x.meter: (x.quantity, x.included, x.billable, x.unit_price, x.amount) for x in lines}


def test_usage_statement_hand_computed(db: Database, plans: Path) -> None:
    acme, beta = setup_tenants(db)
    feed = Feed(db)
    feed.month(acme, "gw1", SEP, 30, 50_000_000)  # 30 days, 1.5 GB
    feed.month(acme, "gw2", SEP, 5)  # 5 days, no egress
    feed.day(acme, "gw2", "2025-10-01", 7)  # next month: not counted
    billing = Billing(db, plans)
    st = billing.usage(acme, SEP)
    assert (st.closed, st.plan, st.currency, st.gateway_days, st.egress_bytes) == (
        False, "standard", "EUR", 35, 1_500_000_000)
    assert (st.included_gateway_days, st.included_egress_bytes) == (30, 1_000_000_000)
    # gateway-days: 35 - 1 x 30 = 5 extra x 0.50 = 2.50; egress: 0.5 GB x 0.97 = 0.485 -> 0.49 (half-up)
    assert by_meter(st.lines) == {
        "base": (Decimal(1), Decimal(0), Decimal(1), Decimal("10.00"), Decimal("10.00")),
        "gateway_days": (Decimal(35), Decimal(30), Decimal(5), Decimal("0.50"), Decimal("2.50")),
        "egress_gb": (Decimal("1.5"), Decimal(1), Decimal("0.5"), Decimal("0.97"), Decimal("0.49")),
    }
    assert st.total == Decimal("12.99")
    assert [x.id for x in st.lines] == [
        f"{acme}:{SEP}:base", f"{acme}:{SEP}:gateway_days", f"{acme}:{SEP}:egress_gb"]
    assert "5 extra" in st.lines[1].description and "0.5 GB extra" in st.lines[2].description
    assert len(st.daily) == 30 and st.daily[0].gateways_online == 2 and st.daily[5].gateways_online == 1
    assert sum(d.egress_bytes for d in st.daily) == 1_500_000_000
    lines, closed, closed_at, warnings = billing.export(SEP)
    assert (closed, closed_at, warnings) == (False, 0, [])
    assert [x.tenant for x in lines] == ["acme"] * 3 + ["beta"] * 3
    assert sum(x.amount for x in lines if x.tenant_id == beta) == Decimal("10.00")


def test_rounding_and_exact_gigabytes() -> None:
    assert cents(Decimal("0.485")) == Decimal("0.49") and cents(Decimal("0.475")) == Decimal("0.48")
    assert gigabytes(1) == Decimal("0.000000001") and gigabytes(2_500_000_001) == Decimal("2.500000001")


def test_close_freezes_and_price_change_does_not_rewrite(db: Database, plans: Path) -> None:
    acme, _beta = setup_tenants(db)
    Feed(db).month(acme, "gw1", SEP, 30, 50_000_000)
    billing = Billing(db, plans)
    before = billing.usage(acme, SEP)
    lines, closed, closed_at, _ = billing.close(SEP)
    assert closed and closed_at > 0 and len(lines) == 6
    plans.write_text(PLANS.replace('"0.97"', '"9.00"').replace('"10.00"', '"99.00"'))
    after = billing.usage(acme, SEP)
    assert after.closed and after.lines == before.lines and after.total == Decimal("10.49")
    assert (after.gateway_days, after.egress_bytes, after.included_gateway_days) == (30, 1_500_000_000, 30)
    assert [x for x in billing.export(SEP)[0] if x.tenant_id == acme] == list(before.lines)
    assert billing.usage(acme, OCT).total == Decimal("99.00")  # the open month uses the new prices
    with db.session(readonly=True) as s:
        snap = s.get(BillingPeriod, SEP)
        assert snap is not None and '"egress_gb_price": "0.97"' in snap.plans
        found = s.execute(select(BillingUsage).where(BillingUsage.tenant_id == acme)).scalars()
        billed = {(u.meter, u.billed_in): u.quantity for u in found}
    assert billed == {("gateway_days", SEP): 30, ("egress_bytes", SEP): 1_500_000_000}


def test_late_telemetry_becomes_an_adjustment_billed_once(db: Database, plans: Path) -> None:
    acme, beta = setup_tenants(db)
    feed = Feed(db)
    feed.month(acme, "gw1", SEP, 30, 50_000_000)
    billing = Billing(db, plans)
    billing.close(SEP)
    plans.write_text(PLANS.replace('"0.97"', '"5.00"').replace('"0.50"', '"7.00"'))  # SEP keeps its prices
    feed.day(acme, "gw2", "2025-09-10", 600_000_000)  # late: +1 gateway-day, +0.6 GB for September
    feed.day(beta, "gwb", "2025-09-11")  # beta: +1 gateway-day, within beta's included 30
    oct_st = billing.usage(acme, OCT)
    adj = {k: v for k, v in by_meter(oct_st.lines).items() if k.startswith("adjustment")}
    # gateway-days 30 -> 31 at September's 0.50: 0.00 -> 0.50; egress 1.5 -> 2.1 GB: 0.49 -> 1.07 (1.1 x 0.97)
    assert adj == {
        f"adjustment:{SEP}:gateway_days": (Decimal(1), Decimal(0), Decimal(1), Decimal("0.50"),
                                            Decimal("0.50")),
        f"adjustment:{SEP}:egress_gb": (Decimal("0.6"), Decimal(0), Decimal("0.6"), Decimal("0.97"),
                                         Decimal("0.58")),
    }
    assert oct_st.total == Decimal("10.00") + Decimal("0.50") + Decimal("0.58")
    assert f"{acme}:{OCT}:adjustment:{SEP}:egress_gb" in {x.id for x in oct_st.lines}
    beta_adj = [x for x in billing.usage(beta, OCT).lines if x.meter.startswith("adjustment")]
    assert [(x.meter, x.quantity, x.amount) for x in beta_adj] == [
        (f"adjustment:{SEP}:gateway_days", Decimal(1), Decimal("0.00"))]
    assert not any(x.meter.startswith("adjustment") for x in billing.usage(acme, NOV).lines)
    assert billing.usage(acme, SEP).total == Decimal("10.49")  # the closed month is not rewritten
    frozen, _, _, _ = billing.close(OCT)
    assert [x for x in frozen if x.tenant_id == acme] == list(billing.usage(acme, OCT).lines)
    assert billing.usage(acme, OCT).total == Decimal("11.08")
    nov = billing.usage(acme, NOV)  # already billed: no adjustment again
    assert [x.meter for x in nov.lines] == ["base", "gateway_days", "egress_gb"]
    feed.day(acme, "gw2", "2025-09-12", 400_000_000)  # later still: only the new delta
    nov = billing.usage(acme, NOV)
    # 1.5 x .97 - 1.07 = 0.385
    assert by_meter(nov.lines)[f"adjustment:{SEP}:egress_gb"][4] == Decimal("0.39")
    assert by_meter(nov.lines)[f"adjustment:{SEP}:gateway_days"][4] == Decimal("0.50")


def test_bad_input_changes_nothing(db: Database, plans: Path) -> None:
    acme, _ = setup_tenants(db)
    billing = Billing(db, plans)
    for bad in ("2026-13", "2025-1", "", "1969-12"):
        with pytest.raises(InvalidInput, match="billing period"):
            billing.close(bad)
    this_month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    with pytest.raises(Conflict, match="not over yet"):
        billing.close(this_month)
    billing.close(SEP)
    with pytest.raises(Conflict, match="already closed"):
        billing.close(SEP)
    with pytest.raises(Conflict, match=f"close {OCT} first"):
        billing.close(NOV)
    with pytest.raises(Conflict, match="in order"):
        billing.close("2025-08")
    plans.write_text(PLANS.replace('gateway_day_price: "0.50"', 'gateway_day_price: "a lot"'))
    with pytest.raises(InvalidInput, match=rf"^{plans}: plans.standard.gateway_day_price: .*'a lot'"):
        billing.close(OCT)
    with pytest.raises(InvalidInput):
        billing.usage(acme, OCT)
    with db.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(BillingPeriod)) == 1
        assert s.scalar(select(func.count()).select_from(BillingLine)) == 6


@pytest.mark.parametrize("text, field", [
    ("currency: euro\nplans: {}\n", "currency"),
    ("currency: EUR\nplans: {}\n", "plans"),
    (PLANS.replace("    included_gateways: 1\n", ""), "plans.standard.included_gateways"),
    (PLANS.replace("included_gateways: 1", "included_gateways: 1.5"), "plans.standard.included_gateways"),
    (PLANS.replace('monthly_fee: "10.00"', 'monthly_fee: "-1"'), "plans.standard.monthly_fee"),
    (PLANS.replace('monthly_fee: "10.00"', 'monthly_fee: "10.00"\n    colour: red'), "plans.standard.colour"),
    (PLANS + "extra: 1\n", "extra"),
    ("currency: [EUR\n", "line 2"),
    ("- a\n- b\n", "top level"),
])
def test_malformed_plans_file(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "plans.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as e:
        load_plans(path)
    message = str(e.value)
    assert message.startswith(f"{path}: {field}") and "\n" not in message


def test_default_plans_cover_the_default_plan_names(tmp_path: Path) -> None:
    from controller.domain.names import DEFAULT_PLAN, KNOWN_PLANS

    book = load_plans(tmp_path / "absent.yaml")
    assert book.source == "built-in plans"
    assert set(KNOWN_PLANS) <= set(book.plans) and DEFAULT_PLAN in book.plans


def test_plan_missing_from_the_book(db: Database, tmp_path: Path) -> None:
    acme, _ = setup_tenants(db)
    Tenants(db).set_plan("acme", "pro")
    path = tmp_path / "plans.yaml"
    path.write_text(PLANS)
    billing = Billing(db, path)
    st = billing.usage(acme, SEP)
    assert st.lines == () and st.total == 0 and "'pro'" in st.warnings[0]
    with pytest.raises(Conflict, match=r"no plan for tenant\(s\) acme \(pro\)"):
        billing.close(SEP)
    with db.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(BillingPeriod)) == 0


def test_concurrent_close_exactly_one_wins(db: Database, plans: Path) -> None:
    acme, _ = setup_tenants(db)
    Feed(db).month(acme, "gw1", SEP, 3, 10)
    billing = Billing(db, plans)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def close() -> None:
        barrier.wait()
        try:
            billing.close(SEP)
            outcomes.append("ok")
        except Conflict as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["billing period 2025-09 is already closed"] * 3 + ["ok"]
    with db.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(BillingLine)) == 6
        assert s.scalar(select(func.count()).select_from(BillingUsage)) == 4
