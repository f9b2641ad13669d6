"""Feeds the controller refreshes itself: each run is a sync of the feed's claims (services/intel_import).

A run that fails to fetch or parse keeps the feed's previous entries and records the error; so does
a feed that suddenly has no entries at all (an empty answer is far likelier a broken mirror than a
threat landscape that vanished). Runs of one feed never overlap across controllers: a run is
claimed by a conditional UPDATE of its next run time (rowcount 1 wins).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import delete, update
from sqlmodel import Session, col, func, select

from controller.domain.errors import AlreadyExists, ControllerError, InvalidInput, NotFound
from controller.domain.ioc_meta import FEED_SOURCE_PREFIX, parse_scope, validate_confidence
from controller.domain.names import _validate_slug, show
from controller.intel.entries import FeedFormatError, validate_tlp
from controller.intel.fetch import Fetched, FetchError, fetch_taxii, fetch_url, read_path
from controller.intel.formats import FORMATS
from controller.services.intel_import import Importer, ImportOptions, ImportResult
from controller.services.scopes import scope_channel, scope_names
from controller.store.db import Database
from controller.store.intel_models import Feed, IocClaim, UrlIndicator
from mssp.common.clock import now_ms

log = logging.getLogger("mssp.feeds")
_COLLECTION_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
TOKEN_ENV_PREFIX = "MSSP_FEED_TOKEN_"
_ENV_RE = re.compile(rf"{TOKEN_ENV_PREFIX}[A-Z0-9_]{{1,40}}")
MAX_FEED_NAME = 59
MIN_EVERY_SECONDS = 60
MAX_EVERY_SECONDS = 7 * 24 * 3600
MAX_ERROR_LEN = 500


@dataclass(frozen=True)
class FeedView:
    name: str
    location: str
    kind: str
    format: str
    scope: str
    every_seconds: int
    last_run_ms: int
    last_success_ms: int
    last_error: str
    entries: int
    next_run_ms: int


@dataclass(frozen=True)
class FeedRun:
    feed: FeedView
    result: ImportResult | None  # None: nothing imported (not modified, or the run failed)
    not_modified: bool = False


def feed_source(name: str) -> str:
    return FEED_SOURCE_PREFIX + name


class Feeds:
    def __init__(self, db: Database, importer: Importer, feed_dir: Path | None = None) -> None:
        """`feed_dir`: path feeds must live under it (None: anywhere, for embedding and tests)."""
        self.db = db
        self.importer = importer
        self.feed_dir = feed_dir

    def _feed_path(self, path: str) -> Path:
        """A path feed: absolute, existing, and under the feed directory: the controller reads it
        with its own rights, and its lines come back in error messages."""
        given = Path(path)
        if not given.is_absolute():
            raise InvalidInput(f"feed path {show(path)} must be absolute (the controller reads it)")
        resolved = given.resolve()
        if self.feed_dir is not None and not resolved.is_relative_to(self.feed_dir.resolve()):
            raise InvalidInput(f"feed path {show(path)} is not under the feed directory {self.feed_dir} "
                               "(MSSP_FEED_DIR)")
        if not resolved.exists():
            raise InvalidInput(f"feed path {show(path)} does not exist on the controller")
        return resolved

    def add(self, name: str, *, url: str | None = None, path: str | None = None, taxii: str | None = None,
            collection: str | None = None, token_env: str | None = None, fmt: str = "auto",
            column: str | None = None, scope: str = "global", every_seconds: int = 3600,
            confidence: int | None = None, tlp: str | None = None) -> FeedView:
        """A TAXII feed pulls incrementally (added_after): it adds and, for revoked objects, removes;
        an url or path feed is a whole list, and each run is a sync of it."""
        name = _validate_slug("feed", name)
        if len(name) > MAX_FEED_NAME:  # its claims' source, feed:NAME, has 64 characters at most
            raise InvalidInput(f"feed name {name!r} is too long ({len(name)} characters, "
                               f"max {MAX_FEED_NAME})")
        if sum(x is not None for x in (url, path, taxii)) != 1:
            raise InvalidInput("a feed needs exactly one of --url, --path or --taxii")
        if taxii is not None:
            if not collection or not _COLLECTION_RE.fullmatch(collection):
                raise InvalidInput("--taxii needs --collection ID (the collection's id, a UUID)")
            if token_env is not None and not _ENV_RE.fullmatch(token_env):
                raise InvalidInput(f"--token-env must name a variable {TOKEN_ENV_PREFIX}..., got "
                                   f"{show(token_env)} (only those are ever sent to a feed server)")
            if token_env is not None and not _secure(taxii):
                raise InvalidInput("a TAXII feed with a token needs an https:// URL (or a loopback address)")
            url, fmt = f"{taxii.rstrip('/')}/collections/{collection}/", "stix"
        elif collection is not None or token_env is not None:
            raise InvalidInput("--collection and --token-env go with --taxii")
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidInput(f"feed URL {show(url)} must be an http:// or https:// URL with a host")
        elif path is not None:
            path = str(self._feed_path(path))
        if fmt not in FORMATS:
            raise InvalidInput(f"unknown format {show(fmt)}: use one of {', '.join(FORMATS)}")
        if column and fmt not in ("csv", "auto"):
            raise InvalidInput(f"--column goes with --format csv, not {fmt}")
        if not MIN_EVERY_SECONDS <= every_seconds <= MAX_EVERY_SECONDS:
            raise InvalidInput(
                f"--every must be between {MIN_EVERY_SECONDS}s and 7 days, got {every_seconds}s")
        if confidence is not None:
            validate_confidence(confidence)
        if tlp is not None:
            validate_tlp(tlp)
        where = parse_scope(scope)
        now = now_ms()
        with self.db.session() as s:
            if s.get(Feed, name) is not None:
                raise AlreadyExists(f"feed {name!r} already exists")
            kind = "taxii" if taxii else "url" if url else "path"
            row = Feed(name=name, kind=kind, location=url or str(path), format=fmt, token_env=token_env or "",
                       column=column or "", channel=scope_channel(s, where),
                       confidence=-1 if confidence is None else confidence, every_seconds=every_seconds,
                       tlp=tlp or "", next_run_ms=now, created_at_ms=now)
            s.add(row)
            s.flush()
            return _view(row, str(where))

    def list(self) -> list[FeedView]:
        with self.db.session(readonly=True) as s:
            names = scope_names(s)
            feeds = s.exec(select(Feed).order_by(Feed.name))
            return [_view(r, names.get(r.channel, r.channel)) for r in feeds]

    def run(self, name: str) -> FeedRun:
        """Fetch and sync now; a failure is recorded on the feed (and in the answer), not raised."""
        feed = self._get(name)
        return self._run(feed)

    def run_due(self) -> int:
        """Run every feed whose time has come (the housekeeping job); returns feeds run."""
        now = now_ms()
        with self.db.session(readonly=True) as s:
            due = s.exec(select(Feed).where(col(Feed.next_run_ms) <= now).order_by(Feed.next_run_ms)).all()
        ran = 0
        for feed in due:
            with self.db.session() as s:  # claim the run: one controller wins it
                claimed = s.exec(update(Feed).where(  # type: ignore[call-overload]
                    col(Feed.name) == feed.name, col(Feed.next_run_ms) == feed.next_run_ms,
                ).values(next_run_ms=now + feed.every_seconds * 1000)).rowcount
            if claimed == 1:
                self._run(feed)
                ran += 1
        return ran

    def remove(self, name: str) -> FeedRun:
        """Delete the feed and withdraw its claims, in one transaction (an empty sync)."""
        feed = self._get(name)
        with self.db.session(readonly=True) as s:
            scope = scope_names(s).get(feed.channel)
        if scope is None:  # its tenant was deleted: nothing of it is enforced any more
            with self.db.session() as s:
                _locked(s, feed.name)
                for table in (IocClaim, UrlIndicator):
                    s.exec(delete(table).where(  # type: ignore[call-overload]
                        col(table.channel) == feed.channel, col(table.source) == feed_source(feed.name)))
                s.exec(delete(Feed).where(col(Feed.name) == feed.name))  # type: ignore[call-overload]
            return FeedRun(_view(feed, ""), None)

        def delete_feed(s: Session, _result: ImportResult) -> None:
            s.delete(_locked(s, feed.name))

        result = self.importer.import_feed(b"", ImportOptions(fmt="plain", scope=scope),
                                           source=feed_source(feed.name), sync=True, hook=delete_feed)
        return FeedRun(_view(feed, scope), result)

    def _get(self, name: str) -> Feed:
        with self.db.session(readonly=True) as s:
            feed = s.get(Feed, name)
            if feed is None:
                raise NotFound(f"unknown feed {name!r}")
            s.expunge(feed)
            return feed

    def _run(self, feed: Feed) -> FeedRun:
        """Fetch and import; every failure is recorded on the feed (its previous entries stay)."""
        started = now_ms()
        try:
            with self.db.session(readonly=True) as s:
                scope = scope_names(s).get(feed.channel) or _gone(feed)
            options = ImportOptions(fmt=feed.format, scope=scope, confidence=None if feed.confidence < 0 else
                                    feed.confidence, tlp=feed.tlp or None, column=feed.column or None,
                                    skip_invalid=True)
            if feed.kind == "taxii":
                return self._pull(feed, started, options)
            if feed.kind == "url":
                fetched = fetch_url(feed.location, etag=feed.etag, last_modified=feed.last_modified)
            else:
                fetched = Fetched(read_path(Path(feed.location)))
            if fetched.data is None:
                return FeedRun(self._record(feed, started, error="", ok=True), None, not_modified=True)
            previous = feed.entries

            def check(s: Session, result: ImportResult) -> None:
                _locked(s, feed.name)  # removed while it ran: its claims must not come back
                if result.entries == 0 and previous > 0:
                    raise InvalidInput(f"the feed has no valid entries now; kept its {previous} previous")

            result = self.importer.import_feed(fetched.data, options, source=feed_source(feed.name),
                                               sync=True, hook=check)
        except (FetchError, FeedFormatError, ControllerError) as exc:
            return FeedRun(self._record(feed, started, error=str(exc), ok=False), None)
        except Exception as exc:  # a hostile or broken server must not stop the other feeds
            log.exception("feed %s: run failed", feed.name)
            error = f"run failed: {type(exc).__name__}"
            return FeedRun(self._record(feed, started, error=error, ok=False), None)
        validators = (fetched.etag, fetched.last_modified)
        return FeedRun(self._record(feed, started, error="", ok=True, entries=result.entries,
                                    validators=validators), result)

    def _pull(self, feed: Feed, started: int, options: ImportOptions) -> FeedRun:
        """One incremental TAXII pull: objects added since the last successful one (with a margin)."""
        token = os.environ.get(feed.token_env, "") if feed.token_env else ""
        if feed.token_env and not token:
            raise FetchError(f"the controller's environment has no {feed.token_env} (the feed's token)")
        data = fetch_taxii(feed.location, added_after_ms=feed.last_success_ms, token=token)
        source = feed_source(feed.name)

        def still_there(s: Session, _result: ImportResult) -> None:
            _locked(s, feed.name)

        result = self.importer.import_feed(data, options, source=source, hook=still_there)
        with self.db.session(readonly=True) as s:
            held = s.exec(select(func.count()).select_from(IocClaim).where(
                IocClaim.channel == feed.channel, IocClaim.source == source)).one()
        return FeedRun(self._record(feed, started, error="", ok=True, entries=int(held)), result)

    def _record(self, feed: Feed, started: int, *, error: str, ok: bool, entries: int | None = None,
                validators: tuple[str, str] | None = None) -> FeedView:
        with self.db.session() as s:
            row = s.get(Feed, feed.name)
            if row is None:  # removed while it ran
                return _view(feed, "")
            row.last_run_ms = started
            row.last_error = error[:MAX_ERROR_LEN]
            if ok:
                row.last_success_ms = started
            if entries is not None:
                row.entries = entries
            if validators is not None:
                row.etag, row.last_modified = validators[0], validators[1][:64]
            if row.next_run_ms <= started:
                row.next_run_ms = started + row.every_seconds * 1000
            s.add(row)
            s.flush()
            return _view(row, scope_names(s).get(row.channel, ""))


def _secure(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.hostname or "") in ("127.0.0.1", "::1", "localhost")


def _locked(s: Session, name: str) -> Feed:
    """The feed row, held until commit (NotFound once removed): runs and removal serialize on it."""
    row = s.exec(select(Feed).where(Feed.name == name).with_for_update()).first()
    if row is None:
        raise NotFound(f"unknown feed {name!r} (removed meanwhile)")
    return row


def _gone(feed: Feed) -> str:
    raise NotFound(f"the scope of feed {feed.name!r} is gone (its tenant was deleted); remove the feed")


def _view(row: Feed, scope: str) -> FeedView:
    return FeedView(row.name, row.location, row.kind, row.format, scope, row.every_seconds, row.last_run_ms,
                    row.last_success_ms, row.last_error, row.entries, row.next_run_ms)
