"""Source claims and the indicator rows they add up to, written in bulk with their pushes.

An indicator row (``ioc``) is what gateways enforce: its confidence is the highest claim's, its expiry
the latest (never, when any claim never expires), its source the top claim's. A claim set changes in
one place (``ChannelWriter``): rows and pushes follow from the new claims, so what gateways hold is
always the sum of what the sources say. All reads and writes here run in the caller's transaction,
with the channel locked (services.channels.lock_channel).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, delete, tuple_, update
from sqlmodel import Session, col, select

from controller.services.channels import append_push
from controller.store.bulk import insert_rows
from controller.store.intel_models import IocClaim
from controller.store.models import Ioc
from mssp.common.clock import now_ms
from mssp.common.parts import MAX_PUSH_BYTES
from mssp.v1 import push_pb2

Key = tuple[int, str]  # (IocKind, canonical value)
_IN_CHUNK = 500  # keys per IN (...) list: under SQLite's and PostgreSQL's parameter limits
_DELTA_HEADROOM = 64 * 1024


@dataclass(frozen=True)
class Claim:
    """What one source says of one indicator."""

    confidence: int
    expires_at_ms: int  # 0 = never
    tlp: str = ""
    seen_ms: int = field(default=0, compare=False)  # when the source last said it: breaks ties
    decays: bool = field(default=False, compare=False)  # feeds and imports decay; an operator's add does not


@dataclass(frozen=True)
class Aggregate:
    confidence: int
    expires_at_ms: int
    source: str


def aggregate(claims: Mapping[str, Claim]) -> Aggregate | None:
    """The indicator the claims add up to (None: no claim left, the indicator goes)."""
    if not claims:
        return None
    if len(claims) == 1:  # the common case in a bulk import: skip the ranking
        ((source, top),) = claims.items()
        return Aggregate(top.confidence, top.expires_at_ms, source)
    source, top = max(claims.items(), key=lambda item: (item[1].confidence, item[1].seen_ms, item[0]))
    ends = [c.expires_at_ms for c in claims.values()]
    return Aggregate(top.confidence, 0 if 0 in ends else max(ends), source)


def chunks(items: list, size: int = _IN_CHUNK) -> Iterable[list]:  # type: ignore[type-arg]
    return (items[i : i + size] for i in range(0, len(items), size))


IOC_COLS = ("channel", "type", "value", "source", "confidence", "created_at_ms", "expires_at_ms", "seq",
            "updated_at_ms")
CLAIM_COLS = ("channel", "type", "value", "source", "confidence", "expires_at_ms", "created_at_ms",
               "last_seen_ms", "tlp", "decays")
_CLAIMS = select(IocClaim.type, IocClaim.value, IocClaim.source, IocClaim.confidence, IocClaim.expires_at_ms,
                 IocClaim.tlp, IocClaim.last_seen_ms)


def _shared(cache: dict[tuple[Any, ...], Any], make: type, *fields: Any) -> Any:
    """One immutable object per distinct value: a million rows read back hold a handful of shapes."""
    made = cache.get(fields)
    if made is None:
        made = cache[fields] = make(*fields)
    return made


def source_claims(s: Session, channel: str, source: str) -> dict[Key, Claim]:
    query = select(IocClaim.type, IocClaim.value, IocClaim.confidence, IocClaim.expires_at_ms,
                   IocClaim.tlp, IocClaim.last_seen_ms).where(IocClaim.channel == channel,
                                                              IocClaim.source == source)
    cache: dict[tuple[Any, ...], Claim] = {}
    rows = s.connection().execute(query)  # Core rows: bulk reads skip the ORM's per-row work
    return {(t, v): _shared(cache, Claim, c, e, tlp, seen) for t, v, c, e, tlp, seen in rows}


def claims_of(s: Session, channel: str, keys: Iterable[Key]) -> dict[Key, dict[str, Claim]]:
    """Every source's claims on these indicators."""
    found: dict[Key, dict[str, Claim]] = {}
    for part in chunks(sorted(set(keys))):
        query = _CLAIMS.where(
            IocClaim.channel == channel, tuple_(col(IocClaim.type), col(IocClaim.value)).in_(part))
        for t, v, src, c, e, tlp, seen in s.exec(query):
            found.setdefault((t, v), {})[src] = Claim(c, e, tlp, seen)
    return found


def other_claims(s: Session, channel: str, source: str) -> dict[Key, dict[str, Claim]]:
    """The channel's claims by every source but one (a bulk change of that source reads them once)."""
    found: dict[Key, dict[str, Claim]] = {}
    cache: dict[tuple[Any, ...], Claim] = {}
    query = _CLAIMS.where(IocClaim.channel == channel, IocClaim.source != source)
    for t, v, src, c, e, tlp, seen in s.connection().execute(query):
        found.setdefault((t, v), {})[src] = _shared(cache, Claim, c, e, tlp, seen)
    return found


def indicator_rows(s: Session, channel: str, keys: Iterable[Key] | None = None) -> dict[Key, Aggregate]:
    """The channel's indicator rows (all, or those of `keys`) as they stand."""
    base = select(Ioc.type, Ioc.value, Ioc.confidence, Ioc.expires_at_ms, Ioc.source)
    if keys is None:
        cache: dict[tuple[Any, ...], Aggregate] = {}
        rows = s.connection().execute(base.where(Ioc.channel == channel))
        return {(t, v): _shared(cache, Aggregate, c, e, src) for t, v, c, e, src in rows}
    found: dict[Key, Aggregate] = {}
    for part in chunks(sorted(set(keys))):
        query = base.where(Ioc.channel == channel, tuple_(col(Ioc.type), col(Ioc.value)).in_(part))
        found.update({(t, v): Aggregate(c, e, src) for t, v, c, e, src in s.exec(query)})
    return found


@dataclass
class ChannelWriter:
    """Claim changes of one channel, applied at once: claims first, then the rows and pushes they imply.

    `before` holds the rows as they stood for every key touched; `after` the claims each key has
    once the changes are in (only for touched keys)."""

    s: Session
    channel: str
    now: int
    put: dict[tuple[Key, str], Claim] = field(default_factory=dict)  # (key, source) -> new claim
    fresh: set[tuple[Key, str]] = field(default_factory=set)  # of `put`: claims that did not exist
    drop: set[tuple[Key, str]] = field(default_factory=set)
    seen: dict[str, list[Key]] = field(default_factory=dict)  # claims re-stated unchanged: last seen
    # Indicators no source claimed and no row holds: added straight, without the ranking (bulk imports).
    new: dict[str, list[tuple[Key, Claim]]] = field(default_factory=dict)

    def add_new(self, key: Key, source: str, claim: Claim) -> None:
        """The caller knows no claim and no row exists for `key` in this channel."""
        self.new.setdefault(source, []).append((key, claim))

    def upsert(self, key: Key, source: str, claim: Claim, *, existed: bool) -> None:
        self.put[(key, source)] = claim
        if not existed:
            self.fresh.add((key, source))

    def remove(self, key: Key, source: str) -> None:
        self.drop.add((key, source))

    def touch(self, key: Key, source: str) -> None:
        self.seen.setdefault(source, []).append(key)

    def apply(
        self, before: Mapping[Key, Aggregate], after: Mapping[Key, Mapping[str, Claim]], *,
        always: bool = False,
    ) -> tuple[int, int, list[int]]:
        """Write claims, rows and pushes. Returns (indicators added, indicators removed, push seqs).
        `always` pushes the touched indicators even when they add up as before (an operator's refresh)."""
        self._write_claims()
        cache: dict[tuple[Any, ...], Aggregate] = {}
        upserts: list[tuple[Key, Aggregate]] = [
            (key, _shared(cache, Aggregate, c.confidence, c.expires_at_ms, src))
            for src, items in self.new.items() for key, c in items]
        fresh = len(upserts)
        removes: list[Key] = []
        for key, claims in after.items():
            agg = aggregate(claims)
            if agg is None:
                if key in before:
                    removes.append(key)
            elif always or before.get(key) != agg:
                upserts.append((key, agg))
        seqs = self._push(upserts, removes)
        seq = seqs[-1] if seqs else 0
        added = upserts[:fresh] + [(k, a) for k, a in upserts[fresh:] if k not in before]
        # Dated now, under the channel lock: the TAXII collection pages by this date, so rows must not
        # appear later (at commit) with a date before what a partner already read past.
        ch, now = self.channel, now_ms()
        conn, ioc = self.s.connection(), Ioc.__table__  # type: ignore[attr-defined]
        insert_rows(conn, ioc, IOC_COLS, [
            (ch, k[0], k[1], a.source, a.confidence, now, a.expires_at_ms, seq, now)
            for k, a in added])
        changed = [{"k_type": k[0], "k_value": k[1], "n_source": a.source, "n_confidence": a.confidence,
                    "n_expires": a.expires_at_ms} for k, a in upserts[fresh:] if k in before]
        if changed:
            conn.execute(update(ioc).where(*self._match(ioc)).values(
                seq=seq, updated_at_ms=now, source=bindparam("n_source"),
                confidence=bindparam("n_confidence"), expires_at_ms=bindparam("n_expires")), changed)
        if removes:
            conn.execute(delete(ioc).where(*self._match(ioc)),
                         [{"k_type": k[0], "k_value": k[1]} for k in removes])
        return len(added), len(removes), seqs

    def _match(self, table: Any, *, source: bool = False) -> list[Any]:
        """WHERE this channel's row of the key (and source) bound per executemany row."""
        where = [table.c.channel == self.channel, table.c.type == bindparam("k_type"),
                 table.c.value == bindparam("k_value")]
        return [*where, table.c.source == bindparam("k_source")] if source else where

    def _write_claims(self) -> None:
        conn, claim = self.s.connection(), IocClaim.__table__  # type: ignore[attr-defined]
        ch, now = self.channel, self.now
        insert_rows(conn, claim, CLAIM_COLS, [
            *((ch, k[0], k[1], src, c.confidence, c.expires_at_ms, now, now, c.tlp, c.decays)
              for (k, src), c in self.put.items() if (k, src) in self.fresh),
            *((ch, k[0], k[1], src, c.confidence, c.expires_at_ms, now, now, c.tlp, c.decays)
              for src, items in self.new.items() for k, c in items)])
        changed = [{"k_type": k[0], "k_value": k[1], "k_source": src, "n_confidence": c.confidence,
                    "n_expires": c.expires_at_ms, "n_tlp": c.tlp}
                   for (k, src), c in self.put.items() if (k, src) not in self.fresh]
        if changed:
            conn.execute(update(claim).where(*self._match(claim, source=True)).values(
                last_seen_ms=self.now, confidence=bindparam("n_confidence"),
                expires_at_ms=bindparam("n_expires"), tlp=bindparam("n_tlp")), changed)
        if self.drop:
            conn.execute(delete(claim).where(*self._match(claim, source=True)),
                         [{"k_type": k[0], "k_value": k[1], "k_source": src} for k, src in sorted(self.drop)])
        seen = [{"k_type": k[0], "k_value": k[1], "k_source": src}
                for src, keys in sorted(self.seen.items()) for k in keys]
        if seen:
            conn.execute(update(claim).where(*self._match(claim, source=True)).values(last_seen_ms=self.now),
                         seen)

    def _push(self, upserts: list[tuple[Key, Aggregate]], removes: list[Key]) -> list[int]:
        """One push for the change, or consecutive ones when it exceeds what one push may carry."""
        if not upserts and not removes:
            return []
        budget = MAX_PUSH_BYTES - _DELTA_HEADROOM
        seqs: list[int] = []
        delta, size = push_pb2.IocDelta(), 0
        items: list[tuple[Key, Aggregate | None]] = [*upserts, *((k, None) for k in removes)]
        for (kind, value), agg in items:
            # An upper bound of the serialized size: tags, lengths and varints of at most 10 bytes each.
            cost = len(value) + (len(agg.source) + 40 if agg is not None else 12)
            if size + cost > budget:
                seqs.append(append_push(self.s, self.channel, iocs=delta))
                delta, size = push_pb2.IocDelta(), 0
            if agg is not None:  # add(): no message built and copied per indicator
                delta.upsert.add(type=kind, value=value, expires_at_ms=agg.expires_at_ms,
                                 confidence=agg.confidence, source=agg.source)
            else:
                delta.remove.add(type=kind, value=value)
            size += cost
        seqs.append(append_push(self.s, self.channel, iocs=delta))
        return seqs


def withdraw(s: Session, channel: str, gone: Iterable[tuple[Key, str]], now: int) -> int:
    """Remove these claims (expired, decayed) from a locked channel; returns indicators removed."""
    gone = list(gone)
    keys = [key for key, _ in gone]
    claims = claims_of(s, channel, keys)
    writer = ChannelWriter(s, channel, now)
    for key, src in gone:
        writer.remove(key, src)
        claims.get(key, {}).pop(src, None)
    return writer.apply(indicator_rows(s, channel, keys), {k: claims.get(k, {}) for k in keys})[1]
