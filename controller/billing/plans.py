"""The plan book: currency and, per plan, the monthly fee, what it includes and the overage prices.

Loaded from a YAML file (the built-in default_plans.yaml when the file is absent) and validated
strictly: a typo in a price file must stop billing with a one-line error naming the file and the
field, never bill at a wrong price. Prices are Decimal (no float money); a closed period keeps the
book it was closed under as JSON (`to_json`/`from_json`), so a later price change never rewrites it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from controller.domain.errors import InvalidInput

DEFAULT_PLANS = Path(__file__).resolve().parent / "default_plans.yaml"
PLAN_FIELDS = (
    "monthly_fee", "included_gateways", "included_egress_gb", "gateway_day_price", "egress_gb_price",
)
_MONEY_FIELDS = ("monthly_fee", "gateway_day_price", "egress_gb_price")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_PLAN_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_DECIMAL_RE = re.compile(r"\d{1,12}(\.\d{1,9})?")
MAX_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class Plan:
    name: str
    monthly_fee: Decimal
    included_gateways: int  # per day of the month
    included_egress_gb: Decimal
    gateway_day_price: Decimal
    egress_gb_price: Decimal

    def as_dict(self) -> dict[str, str | int]:
        return {
            "monthly_fee": str(self.monthly_fee), "included_gateways": self.included_gateways,
            "included_egress_gb": str(self.included_egress_gb),
            "gateway_day_price": str(self.gateway_day_price), "egress_gb_price": str(self.egress_gb_price),
        }


@dataclass(frozen=True)
class PlanBook:
    currency: str
    plans: dict[str, Plan]
    source: str = "built-in plans"

    def get(self, name: str) -> Plan | None:
        return self.plans.get(name)

    def to_json(self) -> str:
        plans = {n: p.as_dict() for n, p in sorted(self.plans.items())}
        return json.dumps({"currency": self.currency, "plans": plans}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "snapshot") -> PlanBook:
        return parse_plan_book(json.loads(text), source)


def _fail(source: str, where: str, why: str) -> InvalidInput:
    return InvalidInput(f"{source}: {where}: {why}")


def _decimal(source: str, where: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _fail(source, where, f"must be a decimal number such as \"1.50\", got {type(value).__name__}")
    text = repr(value) if isinstance(value, float) else str(value).strip()
    if not _DECIMAL_RE.fullmatch(text):
        raise _fail(source, where, f"must be a non-negative decimal with at most 9 decimal places, "
                                   f"got {text[:40]!r}")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        raise _fail(source, where, f"not a decimal: {text[:40]!r}") from None


def _plan(source: str, name: Any, body: Any) -> Plan:
    if not isinstance(name, str) or not _PLAN_NAME_RE.fullmatch(name):
        raise _fail(source, f"plans.{str(name)[:40]}", "a plan name is lower case letters, digits, - or _")
    where = f"plans.{name}"
    if not isinstance(body, dict):
        raise _fail(source, where, f"must be a mapping of {', '.join(PLAN_FIELDS)}")
    unknown = sorted(str(k) for k in body if k not in PLAN_FIELDS)
    if unknown:
        raise _fail(source, f"{where}.{unknown[0][:40]}",
                    f"unknown field; the fields are {', '.join(PLAN_FIELDS)}")
    missing = [f for f in PLAN_FIELDS if f not in body]
    if missing:
        raise _fail(source, f"{where}.{missing[0]}", "missing")
    gateways = body["included_gateways"]
    if isinstance(gateways, bool) or not isinstance(gateways, int) or not 0 <= gateways <= 1_000_000:
        raise _fail(source, f"{where}.included_gateways",
                    f"must be a whole number 0..1000000, got {gateways!r:.40}")
    money = {f: _decimal(source, f"{where}.{f}", body[f]) for f in _MONEY_FIELDS}
    egress = _decimal(source, f"{where}.included_egress_gb", body["included_egress_gb"])
    return Plan(name=name, included_gateways=gateways, included_egress_gb=egress, **money)


def parse_plan_book(data: Any, source: str) -> PlanBook:
    if not isinstance(data, dict):
        raise _fail(source, "top level", "must be a mapping with currency and plans")
    unknown = sorted(str(k) for k in data if k not in ("currency", "plans"))
    if unknown:
        raise _fail(source, unknown[0][:40], "unknown field; the fields are currency and plans")
    currency = data.get("currency")
    if not isinstance(currency, str) or not _CURRENCY_RE.fullmatch(currency):
        raise _fail(source, "currency",
                    f"must be a three-letter ISO 4217 code such as EUR, got {currency!r:.40}")
    plans = data.get("plans")
    if not isinstance(plans, dict) or not plans:
        raise _fail(source, "plans", "must be a non-empty mapping of plan name to plan")
    book = {p.name: p for p in (_plan(source, n, b) for n, b in plans.items())}
    return PlanBook(currency=currency, plans=book, source=source)


def parse_plans_text(text: str, source: str) -> PlanBook:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = getattr(e, "problem", None) or "syntax error"
        raise _fail(source, where, f"not valid YAML ({problem})") from None
    return parse_plan_book(data, source)


def load_plans(path: Path | None) -> PlanBook:
    """The plan book in `path`, or the built-in one when `path` is None or does not exist."""
    if path is None or not path.exists():
        return parse_plans_text(DEFAULT_PLANS.read_text(encoding="utf-8"), "built-in plans")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read the plans file: {e.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _fail(str(path), "file", f"larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(str(path), "file", "not UTF-8 text") from None
    return parse_plans_text(text, str(path))
