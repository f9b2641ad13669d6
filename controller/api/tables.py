"""CSV for the endpoints whose data is a table (`Accept: text/csv`): one header row, then a row
per item, RFC 4180 quoting, cells that a spreadsheet would run as a formula prefixed with '."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import Request
from starlette.responses import Response

CSV = "text/csv"
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def wants_csv(request: Request) -> bool:
    """CSV when the client asks for it before (or instead of) JSON."""
    accept = request.headers.get("accept", "")
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media == CSV:
            return True
        if media in ("application/json", "application/*", "*/*"):
            return False
    return False


def _cell(value: Any) -> str:
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    if text.startswith(_FORMULA) and not _number(text):
        return "'" + text
    return text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_response(columns: Sequence[str], rows: Iterable[Sequence[Any]],
                 headers: dict[str, str] | None = None) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return Response(out.getvalue(), media_type=CSV, headers=headers)


def csv_content() -> dict[str, Any]:
    return {CSV: {"schema": {"type": "string"}}}
