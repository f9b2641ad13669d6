"""Reading a feed's bytes: an http(s) URL with conditional requests, a file, or a MISP feed directory.

Blocking I/O: the controller calls it from a worker thread, never on the event loop.
"""

from __future__ import annotations

import functools
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from controller.intel.entries import FeedFormatError

MAX_FEED_BYTES = 256 * 1024 * 1024
TIMEOUT_SECONDS = 60.0
USER_AGENT = "mssp-controller-feeds/1"


class FetchError(Exception):
    """The feed could not be read (network, HTTP status, size, missing file); one line for the operator."""


@dataclass(frozen=True)
class Fetched:
    data: bytes | None  # None: not modified since the validators given
    etag: str = ""
    last_modified: str = ""


def fetch_url(url: str, *, etag: str = "", last_modified: str = "", timeout: float = TIMEOUT_SECONDS,
              max_bytes: int = MAX_FEED_BYTES) -> Fetched:
    """GET with If-None-Match / If-Modified-Since; a 304 gives Fetched(None) and keeps the validators."""
    headers = {"User-Agent": USER_AGENT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise FetchError(f"{url}: larger than {max_bytes // 2**20} MiB")
            return Fetched(data, response.headers.get("ETag", ""), response.headers.get("Last-Modified", ""))
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
            return misp_directory(path)
        if path.stat().st_size > max_bytes:
            raise FetchError(f"{path}: larger than {max_bytes // 2**20} MiB")
        return path.read_bytes()
    except OSError as exc:
        raise FetchError(f"{path}: {exc.strerror or exc}") from None


def misp_directory(path: Path) -> bytes:
    manifest_path = path / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except FileNotFoundError:
        raise FeedFormatError(f"{path} is a directory without manifest.json (not a MISP feed)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise FeedFormatError(f"{manifest_path}: not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise FeedFormatError(f"{manifest_path}: expected an object of event uuid -> metadata")
    events = []
    for uuid in manifest:
        event_path = path / f"{uuid}.json"
        if not str(uuid).replace("-", "").isalnum():
            raise FeedFormatError(f"{manifest_path}: {uuid!r} is not an event uuid")
        try:
            events.append(json.loads(event_path.read_bytes()))
        except FileNotFoundError:
            raise FeedFormatError(f"{event_path}: listed in manifest.json but missing") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise FeedFormatError(f"{event_path}: not JSON ({exc})") from None
    return json.dumps(events).encode()


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
        for envelope in as_pages(collection.get_objects, per_request=TAXII_PAGE, **filters):
            objects += envelope.get("objects", [])
            if len(objects) > max_objects:
                raise FetchError(f"{collection_url}: more than {max_objects} objects in one pull")
    except (TAXIIServiceException, requests.RequestException, ValueError) as exc:
        raise FetchError(f"{collection_url}: {' '.join(str(exc).split())[:300]}") from None
    return json.dumps({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000",
                       "objects": objects}).encode()
