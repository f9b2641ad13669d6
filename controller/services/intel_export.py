"""Export of a scope's indicators as a STIX 2.1 bundle, CSV or a plain list, respecting markings.

Only indicators some claim marks with an exported TLP level leave (clear and green by default;
``unmarked`` opts in the indicators no source marked). Nothing exported names a tenant or a source:
sources are names an operator chose and may carry a customer's name.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, select

from controller.domain.errors import InvalidInput
from controller.domain.ioc import IocKind
from controller.domain.ioc_meta import parse_scope
from controller.domain.names import show
from controller.domain.promotion import PROMOTED_SOURCE
from controller.intel.entries import TLP_LEVELS
from controller.services.scopes import scope_channel
from controller.store.db import Database
from controller.store.intel_models import IocClaim
from controller.store.models import Ioc
from mssp.common.clock import now_ms

EXPORT_FORMATS = ("stix", "csv", "plain")
DEFAULT_TLP = ("clear", "green")
UNMARKED = "unmarked"
# TLP 1.0 markings predefined by STIX 2.1 (section 7.2.1.4): every consumer knows them.
STIX_TLP = {
    "clear": "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
    "green": "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
    "amber": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    "amber+strict": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    "red": "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
}
_ORDER = {level: i for i, level in enumerate((UNMARKED, *TLP_LEVELS))}
_NAMESPACE = uuid.UUID("5b1f3e2e-8a36-4f0e-9a55-3c2f8a4f6d10")  # indicator ids stable across exports
_STIX_OBJECT = {IocKind.IPV4: "ipv4-addr", IocKind.CIDR4: "ipv4-addr", IocKind.IPV6: "ipv6-addr",
                IocKind.CIDR6: "ipv6-addr", IocKind.DOMAIN: "domain-name"}
Row = tuple[int, str, int, int, int, str]  # type, value, confidence, created, expires, tlp


def stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def check_levels(levels: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(level.strip().lower() for level in levels)) or DEFAULT_TLP
    for level in chosen:
        if level not in _ORDER:
            raise InvalidInput(f"unknown TLP {show(level)}: use {', '.join(TLP_LEVELS)} or {UNMARKED}")
    return chosen


class Exporter:
    def __init__(self, db: Database) -> None:
        self.db = db

    def export(self, scope: str = "global", fmt: str = "stix", levels: Iterable[str] = (),
               ) -> tuple[bytes, int]:
        if fmt not in EXPORT_FORMATS:
            raise InvalidInput(f"unknown export format {show(fmt)}: use one of {', '.join(EXPORT_FORMATS)}")
        chosen = set(check_levels(levels))
        where = parse_scope(scope)
        now = now_ms()
        with self.db.session(readonly=True) as s:
            channel = scope_channel(s, where)
            marks: dict[tuple[int, str], str] = {}
            # A promotion from tenants' sightings never leaves the MSSP: there is no consent to share
            # them outside it (yet); another source's claim on the same indicator may still export it.
            for t, v, tlp in s.exec(select(IocClaim.type, IocClaim.value, IocClaim.tlp)
                                    .where(IocClaim.channel == channel, IocClaim.source != PROMOTED_SOURCE)):
                level = tlp or UNMARKED
                held = marks.get((t, v))
                if level in chosen and (held is None or _ORDER[level] < _ORDER[held]):
                    marks[(t, v)] = level  # the least restrictive marking any source gave
            query = select(Ioc.type, Ioc.value, Ioc.confidence, Ioc.created_at_ms, Ioc.expires_at_ms
                           ).where(Ioc.channel == channel).order_by(col(Ioc.type), col(Ioc.value))
            rows: list[Row] = [(t, v, c, made, e, marks[(t, v)]) for t, v, c, made, e in s.exec(query)
                               if (t, v) in marks and not 0 < e <= now]
        writer = {"stix": _stix, "csv": _csv, "plain": _plain}[fmt]
        return writer(rows, now), len(rows)


def stix_indicator(kind: int, value: str, confidence: int, created: int, expires: int, tlp: str,
                   modified: int | None = None) -> dict[str, Any]:
    """A STIX 2.1 indicator whose id depends only on the value: the same object in every export,
    a new version (`modified`) when what is enforced of it changed."""
    indicator: dict[str, Any] = {
        "type": "indicator", "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid5(_NAMESPACE, f'{kind}:{value}')}",
        "created": stamp(created), "modified": stamp(max(created, modified or created)),
        "indicator_types": ["malicious-activity"],
        "pattern": f"[{_STIX_OBJECT[IocKind(kind)]}:value = '{value}']",
        "pattern_type": "stix", "pattern_version": "2.1",
        "valid_from": stamp(created), "confidence": confidence,
    }
    if expires:
        indicator["valid_until"] = stamp(expires)
    if tlp != UNMARKED:
        indicator["object_marking_refs"] = [STIX_TLP[tlp]]
    return indicator


def _stix(rows: list[Row], now: int) -> bytes:
    objects = [stix_indicator(*row) for row in rows]
    bundle = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}
    return json.dumps(bundle, indent=1).encode()


def _csv(rows: list[Row], _now: int) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["value", "type", "confidence", "valid_until", "tlp"])
    for kind, value, confidence, _created, expires, tlp in rows:
        w.writerow([value, IocKind(kind).name.lower(), confidence, stamp(expires) if expires else "", tlp])
    return out.getvalue().encode()


def _plain(rows: list[Row], _now: int) -> bytes:
    return "".join(f"{value}\n" for _k, value, *_ in rows).encode()
