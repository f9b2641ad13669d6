"""Reading a feed's bytes: an http(s) URL with conditional requests, a file, or a MISP feed directory.

Blocking I/O: the controller calls it from a worker thread, never on the event loop.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from controller.intel.parse_misp import misp_feed_events

MAX_FEED_BYTES = 256 * 1024 * 1024
TIMEOUT_SECONDS = 60.0  # per socket operation
TOTAL_SECONDS = 600.0  # per fetch, however the server paces it
CHUNK = 1024 * 1024
USER_AGENT = "mssp-controller-feeds/1"


class FetchError(Exception):
    """The feed could not be read (network, HTTP status, size, missing file); one line for the operator."""


@dataclass(frozen=True)
class Fetched:
    data: bytes | None  # None: not modified since the validators given
    etag: str = ""
    last_modified: str = ""


def check_destination(url: str) -> None:
    """No feed is read from a link-local or unspecified address (cloud metadata services live
    there) or over a scheme other than http(s); redirects are checked the same way."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{url}: only http:// and https:// feeds are read")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise FetchError(f"{url}: cannot resolve {parts.hostname}: {exc.strerror or exc}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).partition("%")[0])
        if address.is_link_local or address.is_unspecified or address.is_multicast:
            raise FetchError(f"{url}: {parts.hostname} resolves to {address}, which feeds may not use")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        check_destination(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_CheckedRedirects)


def fetch_url(url: str, *, etag: str = "", last_modified: str = "", timeout: float = TIMEOUT_SECONDS,
              max_bytes: int = MAX_FEED_BYTES, total_seconds: float = TOTAL_SECONDS) -> Fetched:
    """GET with If-None-Match / If-Modified-Since; a 304 gives Fetched(None) and keeps the validators."""
    headers = {"User-Agent": USER_AGENT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    request = urllib.request.Request(url, headers=headers)
    deadline = time.monotonic() + total_seconds
    try:
        check_destination(url)
        with _OPENER.open(request, timeout=timeout) as response:
            parts: list[bytes] = []
            size = 0
            while chunk := response.read(CHUNK):  # a trickling server meets the total deadline
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"{url}: larger than {max_bytes // 2**20} MiB")
                if time.monotonic() > deadline:
                    raise FetchError(f"{url}: not read within {total_seconds:g} s")
                parts.append(chunk)
            return Fetched(b"".join(parts), response.headers.get("ETag", ""),
                           response.headers.get("Last-Modified", ""))
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return Fetched(None, etag, last_modified)
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"{url}: {reason}") from None


def read_path(path: Path, *, max_bytes: int = MAX_FEED_BYTES) -> bytes:
    """A file's bytes, or a MISP feed directory as one JSON list of its events (manifest order)."""
    try:
        if path.is_dir():
            return json.dumps(misp_feed_events(path)).encode()
        if path.stat().st_size > max_bytes:
            raise FetchError(f"{path}: larger than {max_bytes // 2**20} MiB")
        return path.read_bytes()
    except OSError as exc:
        raise FetchError(f"{path}: {exc.strerror or exc}") from None


TAXII_OVERLAP_MS = 5 * 60 * 1000  # re-ask for a margin before the last pull: clock skew, late commits
TAXII_PAGE = 1000


def fetch_taxii(collection_url: str, *, added_after_ms: int = 0, token: str = "",
                timeout: float = TIMEOUT_SECONDS, max_objects: int = 2_000_000) -> bytes:
    """Every object of a TAXII 2.1 collection added after a moment, paged with `next`, as one STIX
    bundle (the importer reads it like a file)."""
    import requests
    from taxii2client.exceptions import TAXIIServiceException
    from taxii2client.v21 import Collection, as_pages

    class _Bearer(requests.auth.AuthBase):
        def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
            r.headers["Authorization"] = f"Bearer {token}"
            return r

    filters: dict[str, str] = {}
    if added_after_ms > 0:
        since = max(0, added_after_ms - TAXII_OVERLAP_MS) / 1000
        filters["added_after"] = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    objects: list[object] = []
    try:
        collection = Collection(collection_url, auth=_Bearer() if token else None)
        collection._conn.session.request = functools.partial(  # type: ignore[method-assign]
            collection._conn.session.request, timeout=timeout)
        check_destination(collection_url)
        deadline = time.monotonic() + TOTAL_SECONDS
        seen: set[str] = set()
        for envelope in as_pages(collection.get_objects, per_request=TAXII_PAGE, **filters):
            if not isinstance(envelope, dict) or not isinstance(envelope.get("objects", []), list):
                raise FetchError(f"{collection_url}: not a TAXII envelope")
            page = envelope.get("objects", [])
            objects += page
            token = str(envelope.get("next", ""))
            if len(objects) > max_objects:
                raise FetchError(f"{collection_url}: more than {max_objects} objects in one pull")
            if envelope.get("more") and (not page or token in seen):  # a server that never ends
                raise FetchError(f"{collection_url}: the server says there is more but sends nothing new")
            if time.monotonic() > deadline:
                raise FetchError(f"{collection_url}: not read within {TOTAL_SECONDS:g} s")
            seen.add(token)
    except (TAXIIServiceException, requests.RequestException, ValueError, KeyError, AttributeError) as exc:
        raise FetchError(f"{collection_url}: {' '.join(str(exc).split())[:300]}") from None
    return json.dumps({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000",
                       "objects": objects}).encode()
