"""Which parser reads a feed: given by the operator, or recognised from the content.

Detection looks at structure, not at the file name alone (feeds are served as ``.txt`` whatever they
hold): JSON is STIX when it is a bundle or indicators and MISP when it holds events; text is CSV
when its header names a value column; everything else is a plain list. A file that is not UTF-8
text is refused as a whole, naming the first bad byte, rather than parsed into noise.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from typing import Any

from controller.intel.entries import FeedFormatError, FeedItem
from controller.intel.parse_csv import VALUE_COLUMNS, parse_csv
from controller.intel.parse_misp import parse_misp
from controller.intel.parse_plain import parse_plain
from controller.intel.parse_stix import parse_stix

FORMATS = ("auto", "plain", "csv", "stix", "misp")
_HEAD_LINES = 200  # how far detection looks for the first data line
_STIX_TYPES = frozenset({"indicator", "marking-definition", "identity", "relationship", "malware", "bundle"})


def decode_feed(data: bytes) -> str:
    """UTF-8 text of a feed, with or without BOM; FeedFormatError for binary or non-UTF-8 data."""
    nul = data.find(b"\x00")
    if nul >= 0:
        raise FeedFormatError(f"feed is binary, not text (NUL byte at offset {nul})")
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + skip
        raise FeedFormatError(
            f"feed is not UTF-8 text: byte 0x{data[offset]:02x} at offset {offset} ({exc.reason})"
        ) from None


def _json_kind(parsed: Any) -> str | None:
    """``stix`` or ``misp`` for JSON in one of those shapes, else None."""
    if isinstance(parsed, dict):
        if parsed.get("type") in ("bundle", "indicator"):
            return "stix"
        if any(key in parsed for key in ("Event", "Attribute", "Object")) or isinstance(
            parsed.get("response"), list
        ):
            return "misp"
        return None
    if isinstance(parsed, list):
        first = next((item for item in parsed if isinstance(item, dict)), None)
        if first is None:
            return None
        if "Event" in first or "Attribute" in first or "info" in first:
            return "misp"
        if first.get("type") in _STIX_TYPES or str(first.get("id", "")).startswith("indicator--"):
            return "stix"
    return None


def _names(line: str) -> set[str]:
    return {field.strip().lower() for field in next(csv.reader([line], skipinitialspace=True), [])}


def _looks_csv(text: str, filename: str, column: str | None) -> bool:
    """A first data line with a comma whose fields (or the commented header's) name a value column."""
    wanted = {column.strip().lower()} if column is not None else set(VALUE_COLUMNS)
    last_comment = ""
    for count, raw in enumerate(text.split("\n", _HEAD_LINES)):
        if count >= _HEAD_LINES:
            break
        line = raw.strip()
        if not line or line[0] == ";":
            continue
        if line[0] == "#":
            body = line.lstrip("#").strip()
            last_comment = body or last_comment
            continue
        if "," not in line:
            return False
        if wanted & _names(line) or ("," in last_comment and wanted & _names(last_comment)):
            return True
        return filename.lower().endswith(".csv") or column is not None
    return False


def _detect(text: str, filename: str = "", column: str | None = None) -> tuple[str, Any]:
    """The format and, for JSON, the parsed document (so it is not parsed twice)."""
    start = text.lstrip()[:1]
    if start in ("{", "["):
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            parsed = None  # "[2001:db8::1]:443" starts a plain line too
        else:
            kind = _json_kind(parsed)
            if kind is None:
                raise FeedFormatError("feed is JSON but neither a STIX 2.1 bundle nor MISP events")
            return kind, parsed
        if start == "{" or filename.lower().endswith(".json"):
            raise FeedFormatError("feed looks like JSON but does not parse as JSON")
    if _looks_csv(text, filename, column):
        return "csv", None
    return "plain", None


def detect_format(data: bytes, filename: str = "") -> str:
    """``stix``, ``misp``, ``csv`` or ``plain`` for a feed's bytes; FeedFormatError if not text."""
    return _detect(decode_feed(data), filename)[0]


def parse_feed(data: bytes, fmt: str = "auto", *, column: str | None = None, filename: str = "",
               ) -> Iterator[FeedItem]:
    """Decode, detect (``auto``) and parse a feed into FeedEntry/Skipped items.

    Decoding, detection and JSON errors raise FeedFormatError here; a CSV without a usable
    header raises it on the first ``next()``. ``column`` names the CSV value column; with
    ``auto`` it makes a comma-separated text feed CSV, as a ``.csv`` filename does.
    """
    if fmt not in FORMATS:
        raise FeedFormatError(f"unknown feed format {str(fmt)[:40]!r}; formats: {', '.join(FORMATS)}")
    text = decode_feed(data)
    parsed: Any = None
    if fmt == "auto":
        fmt, parsed = _detect(text, filename, column=column)
    if column is not None and fmt != "csv":
        raise FeedFormatError(f"a value column is only used with CSV feeds, this feed is {fmt}")
    if fmt == "plain":
        return parse_plain(text)
    if fmt == "csv":
        return parse_csv(text, column)
    if fmt == "stix":
        return parse_stix(parsed if parsed is not None else text)
    return parse_misp(parsed if parsed is not None else text)
