"""Reading a feed's bytes: an http(s) URL with conditional requests, a file, or a MISP feed directory.

Blocking I/O: the controller calls it from a worker thread, never on the event loop.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
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
