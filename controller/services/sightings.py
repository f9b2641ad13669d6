"""Sightings as they arrive, and the promotions they lead to (herd immunity).

A gateway reports a hit the moment it sees one (GatewayService.ReportSightings); hits folded from
telemetry batches (sinkholed queries among them) come through record_folded. Each report is stored
per (indicator, tenant, gateway, host, via) and the indicator's candidate is re-judged by the
promotion policy (controller/domain/promotion.py) in the same transaction. The candidate row is
locked while it is judged, so concurrent reports of one indicator are judged one after the other and
the last sees them all; promotion is a conditional update, so it happens once. Afterwards, in short
transactions of their own, the claims that hold the indicator where the tenant receives it are
refreshed (a sighting restarts their decay clock).

A promotion is one claim by source "alliance" on the alliance (or global) channel, pushed like any
other: it names no tenant, gateway or host, and it passes the never-block guard (popular domains,
CDNs, shared hosting, the allow-list) first.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, true, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from controller.domain.errors import InvalidInput, NotFound
from controller.domain.ioc import parse_ioc
from controller.domain.ioc_meta import parse_scope, validate_ttl
from controller.domain.promotion import (
    PROMOTED_SOURCE,
    PROMOTION_SCOPES,
    Evidence,
    PromotionPolicy,
    decide,
)
from controller.operators import acting_operator_name
from controller.services.allowlist import GuardSettings, guard_for
from controller.services.channels import lock_channel, sharing
from controller.services.claims import Aggregate, ChannelWriter, Claim, Key, claims_of, indicator_rows
from controller.services.scopes import scope_channel
from controller.store.bulk import bulk_upsert, insert_for
from controller.store.db import Database
from controller.store.intel_models import IocClaim
from controller.store.models import Ioc, Tenant
from controller.store.sighting_models import Sighting, SightingCandidate
from mssp.common.channels import ALLIANCE_CHANNEL, GLOBAL_CHANNEL, tenant_channel
from mssp.common.clock import now_ms

log = logging.getLogger("mssp.controller.sightings")

MAX_REPORTS = 100  # per call
MAX_COUNT = 2**63 - 1
HOST_LEN = 45
VIA = ("firewall", "dns", "beacon")
_SIGHTING = Sighting.__table__  # type: ignore[attr-defined]
_CANDIDATE = SightingCandidate.__table__  # type: ignore[attr-defined]
_CANDIDATE_COLS = ("id", "type", "value", "state", "confidence", "first_seen_ms", "last_seen_ms", "scope",
                   "decided_by", "decided_at_ms", "reason")


@dataclass(frozen=True)
class Report:
    """One hit as a gateway reports it (validated by `parse_reports`)."""

    indicator: str
    host: str
    via: str
    count: int
    first_seen_ms: int
    last_seen_ms: int
    score: int = 0  # via "beacon": the router's periodicity score (0-100)


@dataclass(frozen=True)
class Recorded:
    accepted: int
    refused: int
    promoted: tuple[str, ...]  # indicators this call promoted


def parse_reports(reports: Sequence[Report], now: int) -> tuple[list[tuple[Key, Report]], int]:
    """The well-formed reports (canonical indicator, address host) and how many were not."""
    if len(reports) > MAX_REPORTS:
        raise InvalidInput(f"at most {MAX_REPORTS} sightings per report, got {len(reports)}")
    good: list[tuple[Key, Report]] = []
    for r in reports:
        try:
            parsed = parse_ioc(r.indicator)
            host = str(ipaddress.ip_address(r.host)) if r.host else ""
        except (InvalidInput, ValueError):
            continue
        if r.via not in VIA or not 0 <= r.count <= MAX_COUNT or "%" in r.host or len(host) > HOST_LEN:
            continue  # a scoped IPv6 address names the router's own link, never a LAN host to report
        last = min(max(r.last_seen_ms, 0), now) or now  # a router clock ahead of ours is not trusted
        first = min(max(r.first_seen_ms, 0), last) or last
        report = Report(parsed.value, host, r.via, r.count, first, last,
                        min(max(r.score, 0), 100) if r.via == "beacon" else 0)
        good.append(((int(parsed.kind), parsed.value), report))
    return good, len(reports) - len(good)


class Sightings:
    def __init__(self, db: Database, policy: PromotionPolicy | None = None,
                 guard: Callable[[], GuardSettings] | None = None) -> None:
        self.db = db
        self.policy = policy or PromotionPolicy()
        self.guard = guard or GuardSettings

    def record(self, tenant_id: str, gateway_id: str, reports: Sequence[Report]) -> Recorded:
        now = now_ms()
        good, refused = parse_reports(reports, now)
        if not good:
            return Recorded(0, refused, ())
        promoted: list[str] = []
        latest: dict[tuple[Key, str, str], Report] = {}  # one row per key: ON CONFLICT wants that
        for k, r in good:
            held = latest.get((k, r.host, r.via))
            if held is None or held.last_seen_ms < r.last_seen_ms:
                latest[(k, r.host, r.via)] = r
        with self.db.session() as s:
            upsert_sightings(s, [
                {"type": k[0], "value": k[1], "tenant_id": tenant_id, "gateway_id": gateway_id,
                 "host": host, "via": via, "count": r.count, "first_seen_ms": r.first_seen_ms,
                 "last_seen_ms": r.last_seen_ms, "score": r.score}
                for (k, host, via), r in sorted(latest.items())])
            seen: dict[Key, int] = {}  # per indicator: its latest sighting in this report
            for k, r in good:
                seen[k] = max(seen.get(k, 0), r.last_seen_ms)
            candidates = [(uuid.uuid4().hex, k[0], k[1], "candidate", 0, ts, ts, "", "", 0, "")
                          for k, ts in sorted(seen.items())]
            bulk_upsert(s.connection(), _CANDIDATE, _CANDIDATE_COLS, candidates, keys=["type", "value"])
            for key, ts in sorted(seen.items()):
                if self._judge(s, key, ts, now):
                    promoted.append(key[1])
        self._refresh_claims(tenant_id, sorted(seen), now)
        return Recorded(len(good), refused, tuple(promoted))

    def record_folded(self, folded: Sequence[tuple[str, str, str, str, str, int, int]]) -> Recorded:
        """Hits that arrived with telemetry batches (sinkholed queries among them), per gateway."""
        by_gateway: dict[tuple[str, str], list[Report]] = {}
        for tenant_id, gateway_id, indicator, host, via, count, at in folded:
            report = Report(indicator, host, via, count, at, at)
            by_gateway.setdefault((tenant_id, gateway_id), []).append(report)
        accepted = refused = 0
        promoted: list[str] = []
        for (tenant_id, gateway_id), reports in sorted(by_gateway.items()):
            for i in range(0, len(reports), MAX_REPORTS):
                done = self.record(tenant_id, gateway_id, reports[i:i + MAX_REPORTS])
                accepted, refused = accepted + done.accepted, refused + done.refused
                promoted += done.promoted
        return Recorded(accepted, refused, tuple(promoted))

    def promote(self, candidate_id: str, scope: str | None = None, ttl_seconds: int | None = None) -> str:
        """The operator's promotion of a candidate (also one the policy left waiting); its value."""
        now = now_ms()
        scope = scope or self.policy.scope
        if scope not in PROMOTION_SCOPES:
            raise InvalidInput(f"promote to one of {', '.join(PROMOTION_SCOPES)}, got {scope!r}")
        ttl = self.policy.ttl_seconds if ttl_seconds is None else validate_ttl(ttl_seconds)
        with self.db.session() as s:
            cand = _locked_candidate(s, candidate_id)
            if cand.state != "candidate":
                raise InvalidInput(f"sighting {candidate_id} is {cand.state} already")
            if not promote_locked(s, cand, scope, ttl, max(cand.confidence, self.policy.min_confidence),
                                  self.guard(), by=acting_operator_name(), why="promoted by the operator",
                                  now=now):
                raise InvalidInput(cand.reason or f"sighting {candidate_id} could not be promoted")
            return cand.value

    def dismiss(self, candidate_id: str) -> str:
        """Never promote it (it stays listed, dismissed); a promoted one is not withdrawn here."""
        with self.db.session() as s:
            cand = _locked_candidate(s, candidate_id)
            moved = s.exec(update(SightingCandidate).where(  # type: ignore[call-overload]
                col(SightingCandidate.id) == cand.id, col(SightingCandidate.state) == "candidate",
            ).values(state="dismissed", decided_by=acting_operator_name(), decided_at_ms=now_ms(),
                     reason="dismissed by the operator"))
            if moved.rowcount != 1:
                hint = "; remove the indicator with `ioc remove`" if cand.state == "promoted" else ""
                raise InvalidInput(f"sighting {candidate_id} is {cand.state} already{hint}")
            return cand.value

    def _refresh_claims(self, tenant_id: str, keys: list[Key], now: int) -> None:
        """A sighting is the indicator seen again: its decay clock restarts in the channels the tenant
        receives (the alliance only while it shares). Its own short transaction after the sightings
        commit, and best effort: it takes claim rows without their channel lock, so it must never hold
        anything a channel writer waits for; a conflict costs one refresh, not the sighting."""
        try:
            with self.db.session() as s:
                channels = [GLOBAL_CHANNEL, tenant_channel(tenant_id)]
                if sharing(s, tenant_id):
                    channels.append(ALLIANCE_CHANNEL)
                for key in keys:
                    s.exec(update(IocClaim).where(  # type: ignore[call-overload]
                        col(IocClaim.channel).in_(channels), col(IocClaim.type) == key[0],
                        col(IocClaim.value) == key[1], col(IocClaim.last_seen_ms) < now,
                    ).values(last_seen_ms=now))
                    s.commit()  # one indicator at a time: no two claim sets held together
        except DBAPIError as exc:
            log.info("sighting: decay refresh skipped (%s)", exc.__class__.__name__)

    def _judge(self, s: Session, key: Key, seen_ms: int, now: int) -> bool:
        cand = s.exec(select(SightingCandidate).where(SightingCandidate.type == key[0],
                                                       SightingCandidate.value == key[1])
                      .with_for_update()).one()  # concurrent reports of this indicator wait here
        evidence = evidence_of(s, key)
        cand.last_seen_ms = max(cand.last_seen_ms, seen_ms)
        cand.confidence = evidence.confidence
        if cand.state != "candidate":
            s.add(cand)
            return False
        if _held(s, GLOBAL_CHANNEL, key):
            go, why = False, "already global: every gateway enforces it"
        else:
            go, why = decide(self.policy, evidence)
        cand.reason = why[:200]
        s.add(cand)
        s.flush()
        if not go:
            return False
        return promote_locked(s, cand, self.policy.scope, self.policy.ttl_seconds, evidence.confidence,
                              self.guard(), by="policy", why=why, now=now)


def upsert_sightings(s: Session, rows: list[dict[str, object]]) -> None:
    """Insert or widen: the earliest first seen, the latest last seen, the largest count (the agent
    reports running totals, a telemetry batch its own share: neither may lower what is known)."""
    if not rows:
        return
    conn = s.connection()
    stmt = insert_for(conn, _SIGHTING)
    new, old = stmt.excluded, _SIGHTING.c
    stmt = stmt.on_conflict_do_update(
        index_elements=["type", "value", "tenant_id", "gateway_id", "host", "via"],
        set_={"first_seen_ms": case((new.first_seen_ms < old.first_seen_ms, new.first_seen_ms),
                                    else_=old.first_seen_ms),
              "last_seen_ms": case((new.last_seen_ms > old.last_seen_ms, new.last_seen_ms),
                                   else_=old.last_seen_ms),
              "count": case((new.count > old.count, new.count), else_=old.count),
              "score": case((new.score > old.score, new.score), else_=old.score)})
    conn.execute(stmt, rows)


def _locked_candidate(s: Session, candidate_id: str) -> SightingCandidate:
    if not isinstance(candidate_id, str) or not candidate_id:
        raise InvalidInput("a sighting id is required")
    query = select(SightingCandidate).where(SightingCandidate.id == candidate_id).with_for_update()
    cand = s.exec(query).first()
    if cand is None:
        raise NotFound(f"unknown sighting {candidate_id!r}")
    return cand


def evidence_of(s: Session, key: Key) -> Evidence:
    seen_by = select(Sighting.tenant_id).where(Sighting.type == key[0], Sighting.value == key[1]).distinct()
    sharing = list(s.exec(select(Tenant.id).where(  # type: ignore[call-overload]
        col(Tenant.id).in_(seen_by), col(Tenant.sharing) == true(), Tenant.deleted_at_ms == 0)))
    own = [tenant_channel(tid) for tid in sharing]
    confidence = _max_confidence(s, [*own, ALLIANCE_CHANNEL], key)
    beacon = 0
    if sharing:
        beacon = s.exec(select(func.max(Sighting.score)).where(  # type: ignore[call-overload]
            Sighting.type == key[0], Sighting.value == key[1], col(Sighting.tenant_id).in_(sharing))).one()
    return Evidence(len(sharing), confidence, _max_confidence(s, own, key), int(beacon or 0))


def _max_confidence(s: Session, channels: list[str], key: Key) -> int:
    if not channels:
        return 0
    found = s.exec(select(func.max(IocClaim.confidence)).where(
        col(IocClaim.channel).in_(channels), IocClaim.type == key[0], IocClaim.value == key[1])).one()
    return int(found or 0)


def _held(s: Session, channel: str, key: Key) -> bool:
    query = select(Ioc.id).where(Ioc.channel == channel, Ioc.type == key[0], Ioc.value == key[1])
    return s.exec(query).first() is not None


def promote_locked(s: Session, cand: SightingCandidate, scope: str, ttl_seconds: int, confidence: int,
                   guard: GuardSettings, *, by: str, why: str, now: int) -> bool:
    """Promote `cand` (its row locked by the caller): one claim on the scope's channel. False when the
    guard refuses it (the reason is kept on the candidate) or it was decided meanwhile."""
    if scope not in PROMOTION_SCOPES:
        raise InvalidInput(f"promote to one of {', '.join(PROMOTION_SCOPES)}, got {scope!r}")
    validate_ttl(ttl_seconds)
    channel = scope_channel(s, parse_scope(scope))
    lock_channel(s, channel)
    parsed = parse_ioc(cand.value)
    refusal = guard_for(s, channel, guard).refusal(parsed)
    if refusal is not None:
        cand.reason = f"not promoted: {refusal}"[:200]
        s.add(cand)
        return False
    moved = s.exec(update(SightingCandidate).where(  # type: ignore[call-overload]
        col(SightingCandidate.id) == cand.id, col(SightingCandidate.state) == "candidate",
    ).values(state="promoted", scope=scope, decided_by=by, decided_at_ms=now, reason=why[:200]))
    if moved.rowcount != 1:
        return False
    key = (cand.type, cand.value)
    claims = dict(claims_of(s, channel, [key]).get(key, {}))
    claim = Claim(max(confidence, 1), now + ttl_seconds * 1000 if ttl_seconds else 0, "", now, decays=True)
    writer = ChannelWriter(s, channel, now)
    writer.upsert(key, PROMOTED_SOURCE, claim, existed=PROMOTED_SOURCE in claims)
    before: dict[Key, Aggregate] = dict(indicator_rows(s, channel, [key]))
    writer.apply(before, {key: {**claims, PROMOTED_SOURCE: claim}})
    s.refresh(cand)
    return True
