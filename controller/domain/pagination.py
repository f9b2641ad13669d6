"""Opaque list cursors: the sort key of the last row a page showed, so the next page starts after it
(keyset pagination: stable under inserts, no OFFSET scan).

A cursor is base64url JSON naming the list it belongs to and a digest of the tenant it was issued
to; a cursor from another list or another tenant, or one that does not decode, is InvalidInput
(never silently the first page, which would make a client loop forever).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from controller.domain.errors import InvalidInput

MIN_LIMIT = 1
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
MAX_CURSOR_CHARS = 512


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or not MIN_LIMIT <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between {MIN_LIMIT} and {MAX_LIMIT}, got {str(limit)[:20]}")
    return limit


def _owner(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()[:12]


def encode_cursor(kind: str, owner: str, key: tuple[str | int, ...]) -> str:
    """The cursor after a row whose sort key is `key`, in list `kind` of `owner` (a tenant id)."""
    raw = json.dumps([kind, _owner(owner), *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str | None, kind: str, owner: str, types: tuple[type, ...]
) -> tuple[Any, ...] | None:
    """The sort key in `cursor` (None for no cursor: the first page); its parts have `types`."""
    if cursor is None or cursor == "":
        return None
    bad = InvalidInput("invalid cursor: pass back the next_cursor of the previous page unchanged")
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_CHARS:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if (not isinstance(value, list) or len(value) != 2 + len(types) or value[0] != kind
            or value[1] != _owner(owner)):
        raise bad
    key = tuple(value[2:])
    for part, wanted in zip(key, types, strict=True):
        if type(part) is not wanted:  # bool is not an int here
            raise bad
    return key
