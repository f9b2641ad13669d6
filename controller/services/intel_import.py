"""Import of a feed file into one scope, as one source's claims: one transaction, one push per channel.

Strict by default: one invalid entry refuses the whole file, naming it. With skip_invalid the valid
ones go in and every skipped one is listed with its reason. What the never-block guard refuses and
what is unsupported (hashes, non-network patterns) is counted and listed, never an error: real
feeds carry both. A sync (a feed refresh) also removes the source's claims the file no longer has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlmodel import Session

from controller.domain.errors import InvalidInput
from controller.domain.ioc import IocKind, IocValue, parse_ioc
from controller.domain.ioc_meta import (
    DEFAULT_CONFIDENCE,
    FEED_SOURCE_PREFIX,
    parse_scope,
    validate_confidence,
    validate_source,
    validate_ttl,
)
from controller.domain.names import show
from controller.intel.entries import TLP_LEVELS, FeedEntry, Skipped, validate_tlp
from controller.intel.formats import parse_feed
from controller.intel.warninglists import url_host_warning
from controller.services.allowlist import GuardSettings, guard_for
from controller.services.channels import lock_channel
from controller.services.claims import ChannelWriter, Claim, Key, indicator_rows, other_claims, source_claims
from controller.services.intel_export import stamp
from controller.services.scopes import scope_channel
from controller.services.urls import keepable, store_urls
from controller.store.db import Database
from mssp.common.clock import now_ms

MAX_LISTED = 1000  # problems listed in a result; the counts are always whole
DEFAULT_IMPORT_SOURCE = "import"


@dataclass(frozen=True)
class ImportOptions:
    fmt: str = "auto"
    scope: str = "global"
    source: str | None = None  # default DEFAULT_IMPORT_SOURCE
    confidence: int | None = None  # given: every entry's; else the feed's own, else the default
    ttl_seconds: int | None = None  # given: every entry expires then; else the feed's valid_until
    tlp: str | None = None  # given: every entry's marking; else the feed's own
    column: str | None = None
    skip_invalid: bool = False
    dry_run: bool = False
    filename: str = ""  # the file's name, for format detection (a .csv is CSV)


@dataclass(frozen=True)
class Problem:
    where: str
    reason: str
    kind: str  # invalid | unsupported | refused | not-blocked


@dataclass
class ImportResult:
    scope: str
    source: str
    dry_run: bool
    entries: int = 0  # indicators the file states (after de-duplication)
    new: int = 0  # indicators the scope did not hold
    refreshed: int = 0  # held already: the source's claim is new or changed
    unchanged: int = 0
    removed: int = 0  # the source's claims withdrawn (revoked, expired, or gone from a synced feed)
    invalid: int = 0
    unsupported: int = 0
    refused: int = 0  # by the never-block guard
    urls: int = 0  # URL entries; their host is blocked unless it is on a popular or shared-hosting list
    seqs: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    first_invalid: Problem | None = None  # what a strict import names, even past MAX_LISTED

    def note(self, where: str, reason: str, kind: str) -> None:
        """Count (invalid, unsupported, refused) and list a problem; a URL not blocked is only listed."""
        if kind != "not-blocked":
            setattr(self, kind, getattr(self, kind) + 1)
        if kind == "invalid" and self.first_invalid is None:
            self.first_invalid = Problem(where, reason, kind)
        if len(self.problems) < MAX_LISTED:
            self.problems.append(Problem(where, reason, kind))


@dataclass
class _Parsed:
    claims: dict[Key, Claim] = field(default_factory=dict)
    wheres: dict[Key, str] = field(default_factory=dict)  # where each indicator first appeared
    urls: dict[str, tuple[str, bool]] = field(default_factory=dict)  # URL -> (host, host blocked)
    withdrawn: set[Key] = field(default_factory=set)


def stricter(given: str | None, feed: str | None) -> str:
    """The more restrictive of the operator's marking and the feed's: --tlp never lowers a RED."""
    levels = [level for level in (given, feed) if level]
    return max(levels, key=TLP_LEVELS.index) if levels else ""


def check_options(options: ImportOptions) -> str:
    """The claim source the import writes; bad options fail before any parsing."""
    source = validate_source(options.source or DEFAULT_IMPORT_SOURCE)
    if options.confidence is not None:
        validate_confidence(options.confidence)
    if options.ttl_seconds is not None:
        validate_ttl(options.ttl_seconds)
    if options.tlp is not None:
        validate_tlp(options.tlp)
    parse_scope(options.scope)
    return source


class Importer:
    def __init__(self, db: Database, guard: GuardSettings | None = None) -> None:
        self.db = db
        self.guard_settings = guard or GuardSettings()

    def import_feed(self, data: bytes, options: ImportOptions, *, source: str | None = None,
                    sync: bool = False, hook: Callable[[Session, ImportResult], None] | None = None,
                    ) -> ImportResult:
        """Parse, validate, guard and store `data`. `source` overrides the options' (feeds pass theirs,
        which an operator's import may not use); `sync` removes the source's claims absent from data;
        `hook` runs in the transaction once the counts are known (raising rolls everything back)."""
        name = check_options(options)
        if source is None and name.startswith(FEED_SOURCE_PREFIX):
            raise InvalidInput(f"source {show(name)} is reserved for the feed of that name")
        name = source or name
        now = now_ms()
        result = ImportResult(scope=str(parse_scope(options.scope)), source=name, dry_run=options.dry_run)
        parsed = self._parse(data, options, result, now)
        if result.first_invalid is not None and not options.skip_invalid:
            first = result.first_invalid
            more = f" (and {result.invalid - 1} more invalid entries)" if result.invalid > 1 else ""
            raise InvalidInput(f"{first.where}: {first.reason}{more}; nothing was imported "
                               "(--skip-invalid imports the valid entries)")
        with self.db.session() as s:
            channel = scope_channel(s, parse_scope(options.scope))
            lock_channel(s, channel)
            guard = guard_for(s, channel, self.guard_settings)
            for key in list(parsed.claims):
                refusal = guard.refusal(IocValue(IocKind(key[0]), key[1]))
                if refusal is not None:
                    del parsed.claims[key]
                    result.note(parsed.wheres[key], refusal, "refused")
            result.entries = len(parsed.claims)
            writer, after = self._plan(s, channel, name, parsed, result, sync=sync, now=now)
            if hook is not None:
                hook(s, result)
            if options.dry_run:
                s.rollback()
                return result
            big = len(after) > 20_000  # then one read of the channel beats thousands of keyed ones
            result.seqs = writer.apply(indicator_rows(s, channel, None if big else after), after)[2]
            if parsed.urls or sync:
                store_urls(s, channel, name, parsed.urls, now, sync=sync)
        return result

    def _parse(self, data: bytes, options: ImportOptions, result: ImportResult, now: int) -> _Parsed:
        parsed = _Parsed()
        made: dict[tuple[int, int, str], Claim] = {}
        ttl_end = None
        if options.ttl_seconds is not None:
            ttl_end = now + options.ttl_seconds * 1000 if options.ttl_seconds else 0
        claims, wheres, note = parsed.claims, parsed.wheres, result.note
        items = parse_feed(data, options.fmt, column=options.column, filename=options.filename)
        for item in items:  # the hot loop: locals only
            if isinstance(item, Skipped):
                note(item.where, item.reason, "unsupported" if item.unsupported else "invalid")
                continue
            value = self._value_of(item, result, parsed) if item.is_url else item.value
            if value is None:
                continue
            try:
                ioc = parse_ioc(value)
            except InvalidInput as exc:
                note(item.where, str(exc), "invalid")
                continue
            key = (int(ioc.kind), ioc.value)
            expires = ttl_end if ttl_end is not None else item.valid_until_ms or 0
            if item.valid_from_ms is not None and item.valid_from_ms > now:
                note(item.where, f"not valid before {stamp(item.valid_from_ms)}: import it again then",
                     "unsupported")
                continue
            if item.revoked or (expires != 0 and expires <= now):  # a valid_until before 1970 too
                parsed.withdrawn.add(key)
                continue
            confidence = options.confidence if options.confidence is not None else item.confidence
            shape = (DEFAULT_CONFIDENCE if confidence is None else confidence, expires,
                     stricter(options.tlp, item.tlp))
            claim = made.get(shape)
            if claim is None:  # claims are immutable: entries that say the same share one
                claim = made[shape] = Claim(*shape, now, decays=True)
            held = claims.get(key)
            if held is None:
                claims[key] = claim
                wheres[key] = item.where
            elif (claim.confidence, claim.expires_at_ms == 0, claim.expires_at_ms) > (
                    held.confidence, held.expires_at_ms == 0, held.expires_at_ms):
                claims[key] = claim  # stated twice: the surer, longer-lived statement counts
        parsed.withdrawn -= parsed.claims.keys()
        return parsed

    @staticmethod
    def _value_of(item: FeedEntry, result: ImportResult, parsed: _Parsed) -> str | None:
        """The text to block: a URL's host when blocking it is safe (the URL is kept for reporting)."""
        result.urls += 1
        try:
            host = urlsplit(item.value if "://" in item.value else "//" + item.value).hostname
        except ValueError:
            host = None
        if not host:
            result.note(item.where, f"URL {show(item.value)} has no host", "invalid")
            return None
        warning = url_host_warning(host)
        if keepable(item.value):
            parsed.urls[item.value] = (host, warning is None)
        if warning is not None:
            result.note(item.where, f"URL {show(item.value)} is not blocked by address or domain: {warning}",
                        "not-blocked")
            return None
        return host

    @staticmethod
    def _plan(s: Session, channel: str, source: str, parsed: _Parsed, result: ImportResult, *,
              sync: bool, now: int) -> tuple[ChannelWriter, dict[Key, dict[str, Claim]]]:
        """Claim changes and counts, and the claims each touched indicator ends with."""
        existing = source_claims(s, channel, source)
        others = other_claims(s, channel, source)
        writer = ChannelWriter(s, channel, now)
        after: dict[Key, dict[str, Claim]] = {}
        for key, claim in parsed.claims.items():
            old = existing.get(key)
            if old is None and key not in others:
                writer.add_new(key, source, claim)
                result.new += 1
                continue
            if old == claim:
                result.unchanged += 1
                if not sync:
                    writer.touch(key, source)
                continue
            writer.upsert(key, source, claim, existed=old is not None)
            after[key] = {**others.get(key, {}), source: claim}
            result.refreshed += 1  # held already: by this source or another
        gone = (existing.keys() - parsed.claims.keys()) if sync else (parsed.withdrawn & existing.keys())
        for key in gone:
            writer.remove(key, source)
            after[key] = dict(others.get(key, {}))
        result.removed = len(gone)
        # A sync re-states every claim of its source: their last sighting is the feed's last
        # successful run (kept on the feed), not rewritten here row by row.
        return writer, after
