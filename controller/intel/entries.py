"""What a feed parser yields: one candidate indicator per entry, or a reason an entry was skipped.

Parsers only give structure (which text, where in the file, with what validity and marking); the
importer decides what is enforceable (controller.domain.ioc.parse_ioc) and what the never-block
guard refuses, so every source is judged by the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.domain.errors import InvalidInput

TLP_LEVELS = ("clear", "green", "amber", "amber+strict", "red")


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
