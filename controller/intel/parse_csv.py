"""CSV feeds with a header row: abuse.ch Feodo, ThreatFox and URLhaus exports and look-alikes.

abuse.ch puts its header in the last ``#`` comment before the data, others in a plain first row,
so both are read. The value column is found by name so a reordered export keeps working, and a
feed whose header names none of the known columns is refused as a whole rather than read wrong.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from controller.intel.entries import FeedEntry, FeedFormatError, FeedItem, Skipped
from controller.intel.parse_plain import new_entry, strip_port

# First match wins: an explicit value column before an address before a URL or domain.
VALUE_COLUMNS = ("value", "ip", "dst_ip", "ioc", "ioc_value", "indicator", "url", "domain")
TYPE_COLUMNS = ("ioc_type", "type")
CONFIDENCE_COLUMNS = ("confidence", "confidence_level")
_HASH_TYPES = frozenset({"md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_384", "ssdeep", "tlsh"})


class _Lines:
    """Feeds physical lines to csv.reader, dropping comments and blank lines between rows.

    ``started`` lists the physical line numbers handed over for the row being read, so a row's
    ``where`` is the line it starts on even when a quoted field spans lines. A ``#`` line inside
    a quoted field is data, not a comment, so lines are only dropped between rows.
    """

    def __init__(self, lines: list[str], first: int) -> None:
        self._lines = lines
        self._next = first  # 0-based index of the next physical line
        self.started: list[int] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        lines = self._lines
        while self._next < len(lines):
            line = lines[self._next]
            self._next += 1
            if not self.started:
                stripped = line.strip()
                if not stripped or stripped[0] == "#":
                    continue
            self.started.append(self._next)
            return line + "\n"  # keeps a newline inside a quoted field
        raise StopIteration


def _fields(line: str) -> list[str]:
    return [f.strip() for f in next(csv.reader([line], skipinitialspace=True), [])]


def _is_hash_type(kind: str) -> bool:
    """ThreatFox ``md5_hash``/``sha256_hash``, MISP-style ``sha1``, ``filename|md5`` and the like."""
    return kind.endswith("_hash") or kind in _HASH_TYPES or kind.partition("|")[2] in _HASH_TYPES


def _find_column(header: list[str], column: str | None) -> int | None:
    names = [h.lower() for h in header]
    if column is not None:
        wanted = column.strip().lower()
        return names.index(wanted) if wanted in names else None
    for name in VALUE_COLUMNS:
        if name in names:
            return names.index(name)
    return None


def _optional_column(names: list[str], candidates: tuple[str, ...]) -> int | None:
    for name in candidates:
        if name in names:
            return names.index(name)
    return None


def _header(lines: list[str], column: str | None) -> tuple[list[str], int]:
    """The header fields and the index of the first line after it.

    A commented header is taken when the last non-empty comment line before the first data row
    names the value column; otherwise the first data row is the header.
    """
    last_comment: list[str] | None = None
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped[0] == "#":
            body = stripped.lstrip("#").strip()
            if body:
                last_comment = _fields(body)
            continue
        row = _fields(stripped)
        commented = last_comment is not None and len(last_comment) > 1
        if commented and _find_column(last_comment or [], column) is not None:
            if [f.lower() for f in row] == [f.lower() for f in last_comment or []]:
                return row, index + 1  # the header written twice: as a comment and as a row
            return last_comment or [], index
        if _find_column(row, column) is None and commented and len(last_comment or []) == len(row):
            return last_comment or [], index  # neither names the column: report the commented header
        return row, index + 1
    raise FeedFormatError("CSV feed has no header row and no data")


def parse_csv(text: str, column: str | None = None) -> Iterator[FeedItem]:
    """One item per data row; ``where`` is ``line N``, the physical line the row starts on.

    The value column is ``column`` when given (case-insensitive), else the first of
    VALUE_COLUMNS in the header. A ``url`` column or an ``ioc_type``/``type`` of ``url`` gives
    ``is_url=True``; hash types are Skipped(unsupported); ``ip:port`` becomes the address; a
    ``confidence``/``confidence_level`` column (integer 0-100) is kept.
    """
    lines = text.removeprefix("\ufeff").split("\n")
    header, first = _header(lines, column)
    value_at = _find_column(header, column)
    if value_at is None:
        found = ", ".join(repr(h) for h in header) or "none"
        wanted = repr(column) if column is not None else "one of " + ", ".join(VALUE_COLUMNS)
        raise FeedFormatError(f"CSV header has no column {wanted}; columns found: {found}")
    names = [h.lower() for h in header]
    is_url_column = names[value_at] == "url"
    type_at = _optional_column(names, TYPE_COLUMNS)
    confidence_at = _optional_column(names, CONFIDENCE_COLUMNS)
    source = _Lines(lines, first)
    reader = csv.reader(source, skipinitialspace=True)  # ThreatFox writes `", "` between fields
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            at = source.started[0] if source.started else len(lines)
            raise FeedFormatError(f"line {at}: CSV cannot be read: {exc}") from exc
        number = source.started[0]
        source.started = []
        yield _row_item(f"line {number}", row, header, value_at, is_url_column, type_at, confidence_at)


def _row_item(
    where: str,
    row: list[str],
    header: list[str],
    value_at: int,
    is_url_column: bool,
    type_at: int | None,
    confidence_at: int | None,
) -> FeedItem:
    if len(row) <= value_at:
        return Skipped(
            where,
            f"{where} has {len(row)} field{'s' if len(row) != 1 else ''}, the value column "
            f"{header[value_at]!r} is field {value_at + 1} of {len(header)}",
            unsupported=False,
        )
    value = row[value_at].strip()
    if not value:
        return Skipped(where, f"{where}: the value column {header[value_at]!r} is empty", unsupported=False)
    kind = row[type_at].strip().lower() if type_at is not None and type_at < len(row) else ""
    if kind and _is_hash_type(kind):
        return Skipped(where, f"{kind} is a file hash, not a network indicator", unsupported=True)
    is_url = is_url_column or kind == "url" or "://" in value
    if not is_url and ":" in value:
        value = strip_port(value)
    confidence: int | None = None
    if confidence_at is not None and confidence_at < len(row) and row[confidence_at].strip():
        text = row[confidence_at].strip()
        if not (text.isascii() and text.isdigit() and int(text) <= 100):
            return Skipped(
                where,
                f"{where}: confidence {text[:20]!r} in column {header[confidence_at]!r} "
                "is not an integer 0-100",
                unsupported=False,
            )
        confidence = int(text)
    if confidence is None:
        return new_entry(where, value, is_url)
    return FeedEntry(where, value, is_url, confidence=confidence)
