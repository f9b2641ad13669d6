"""What a feed parser yields: one candidate indicator per entry, or a reason an entry was skipped.

Parsers only give structure (which text, where in the file, with what validity and marking); the
importer decides what is enforceable (controller.domain.ioc.parse_ioc) and what the never-block
guard refuses, so every source is judged by the same rules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from controller.domain.errors import InvalidInput
from controller.domain.names import show

TLP_LEVELS = ("clear", "green", "amber", "amber+strict", "red")


def validate_tlp(level: str) -> str:
    """A TLP level as the operator gives it (--tlp): one of TLP_LEVELS."""
    if level not in TLP_LEVELS:
        raise InvalidInput(f"unknown TLP {show(level)}: use one of {', '.join(TLP_LEVELS)}")
    return level


def load_json(data: str | bytes | Any, what: str) -> Any:
    """A feed document: text or bytes parsed (a BOM allowed), anything else as given."""
    if not isinstance(data, (str, bytes)):
        return data
    try:
        return json.loads(data.lstrip("\ufeff") if isinstance(data, str) else data)
    except (ValueError, RecursionError) as exc:
        raise FeedFormatError(f"{what} feed is not JSON: {exc}") from exc


@dataclass(frozen=True)
class FeedEntry:
    """One candidate indicator. ``where`` names it for the operator: ``line 12``, an object id."""

    where: str
    value: str  # raw text: an address, CIDR or domain; a URL when is_url
    is_url: bool = False
    confidence: int | None = None  # 0-100 when the feed says
    valid_from_ms: int | None = None
    valid_until_ms: int | None = None
    tlp: str | None = None  # one of TLP_LEVELS when the feed marks it
    revoked: bool = False  # the feed withdrew it: remove this source's claim


@dataclass(frozen=True)
class Skipped:
    """An entry that is not imported: unsupported (a hash, a non-network pattern) or invalid."""

    where: str
    reason: str
    unsupported: bool


class FeedFormatError(InvalidInput):
    """The file as a whole cannot be read in the format given (not JSON, no value column...)."""


FeedItem = FeedEntry | Skipped
