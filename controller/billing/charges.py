"""Charges from meters and a plan: pure arithmetic, no database.

A month's invoice for a tenant is three lines: the base fee, gateway-days over what the plan
includes (included_gateways x days in the month) and egress GB (10^9 bytes, exact) over the
included volume. Each amount is rounded half-up to cents on its own, and the total is the sum of
the rounded lines, so the lines always add up to the total a customer sees.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from controller.billing.plans import Plan
from controller.domain.reporting import ChargeLine

GB = Decimal(10) ** 9
CENT = Decimal("0.01")
BASE, GATEWAY_DAYS, EGRESS_GB = "base", "gateway_days", "egress_gb"
# Raw quantities kept in billing_usage (integers: no rounding of what was billed).
RAW_GATEWAY_DAYS, RAW_EGRESS_BYTES = "gateway_days", "egress_bytes"
RAW_METERS = (RAW_GATEWAY_DAYS, RAW_EGRESS_BYTES)
_CHARGED = {RAW_GATEWAY_DAYS: GATEWAY_DAYS, RAW_EGRESS_BYTES: EGRESS_GB}


@dataclass(frozen=True)
class Meters:
    gateway_days: int = 0
    egress_bytes: int = 0

    def raw(self, meter: str) -> int:
        return self.gateway_days if meter == RAW_GATEWAY_DAYS else self.egress_bytes


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def days_in_month(period: str) -> int:
    return calendar.monthrange(int(period[:4]), int(period[5:7]))[1]


def gigabytes(nbytes: int) -> Decimal:
    """Exact: bytes / 10^9 as a Decimal (no float, no rounding)."""
    return (Decimal(nbytes) / GB).normalize() if nbytes else Decimal(0)


def plain(d: Decimal) -> str:
    """A Decimal without exponent notation ("0.000000001", not "1E-9")."""
    return format(d, "f")


def included_gateway_days(plan: Plan, period: str) -> int:
    return plan.included_gateways * days_in_month(period)


def _overage(plan: Plan, period: str, raw_meter: str, raw: int) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """(quantity, included, billable, amount) of one overage meter."""
    if raw_meter == RAW_GATEWAY_DAYS:
        quantity, price = Decimal(raw), plan.gateway_day_price
        included = Decimal(included_gateway_days(plan, period))
    else:
        quantity, included, price = gigabytes(raw), plan.included_egress_gb, plan.egress_gb_price
    billable = max(Decimal(0), quantity - included)
    return quantity, included, billable, cents(billable * price)


def _line(tenant_id: str, tenant: str, period: str, plan: Plan, currency: str, meter: str, description: str,
          quantity: Decimal, included: Decimal, billable: Decimal, unit_price: Decimal,
          amount: Decimal) -> ChargeLine:
    return ChargeLine(id=f"{tenant_id}:{period}:{meter}", tenant_id=tenant_id, tenant=tenant, period=period,
                      plan=plan.name, meter=meter, description=description, quantity=quantity,
                      included=included, billable=billable, unit_price=unit_price, amount=amount,
                      currency=currency)


def charge_lines(tenant_id: str, tenant: str, period: str, plan: Plan, currency: str,
                 meters: Meters) -> list[ChargeLine]:
    days = days_in_month(period)
    gd_q, gd_inc, gd_bill, gd_amt = _overage(plan, period, RAW_GATEWAY_DAYS, meters.gateway_days)
    eg_q, eg_inc, eg_bill, eg_amt = _overage(plan, period, RAW_EGRESS_BYTES, meters.egress_bytes)
    one = Decimal(1)
    return [
        _line(tenant_id, tenant, period, plan, currency, BASE, f"{plan.name} plan, monthly fee for {period}",
              one, Decimal(0), one, plan.monthly_fee, cents(plan.monthly_fee)),
        _line(tenant_id, tenant, period, plan, currency, GATEWAY_DAYS,
              f"gateway-days: {gd_q} used, {gd_inc} included "
              f"({plan.included_gateways} gateways x {days} days), "
              f"{gd_bill} extra at {plan.gateway_day_price} {currency} each",
              gd_q, gd_inc, gd_bill, plan.gateway_day_price, gd_amt),
        _line(tenant_id, tenant, period, plan, currency, EGRESS_GB,
              f"egress: {plain(eg_q)} GB sent, {plain(eg_inc)} GB included, {plain(eg_bill)} GB extra "
              f"at {plan.egress_gb_price} {currency} per GB",
              eg_q, eg_inc, eg_bill, plan.egress_gb_price, eg_amt),
    ]


def adjustment_line(tenant_id: str, tenant: str, period: str, usage_period: str, plan: Plan, currency: str,
                    raw_meter: str, billed: int, delta: int) -> ChargeLine:
    """Late telemetry for the closed `usage_period`, billed in `period`: the charge at (billed + delta)
    minus the charge at billed, both under the plan frozen with `usage_period`."""
    before = _overage(plan, usage_period, raw_meter, billed)
    after = _overage(plan, usage_period, raw_meter, billed + delta)
    meter = _CHARGED[raw_meter]
    quantity = after[0] - before[0]
    price = plan.gateway_day_price if raw_meter == RAW_GATEWAY_DAYS else plan.egress_gb_price
    unit = "gateway-days" if raw_meter == RAW_GATEWAY_DAYS else "GB of egress"
    return _line(tenant_id, tenant, period, plan, currency, f"adjustment:{usage_period}:{meter}",
                 f"late telemetry for {usage_period}: {plain(quantity)} more {unit} "
                 f"({plain(after[2] - before[2])} over the plan) at {price} {currency}",
                 quantity, Decimal(0), after[2] - before[2], price, after[3] - before[3])


def total(lines: list[ChargeLine] | tuple[ChargeLine, ...]) -> Decimal:
    return sum((line.amount for line in lines), Decimal("0.00"))
