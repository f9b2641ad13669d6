"""CSV for the endpoints whose data is a table (`Accept: text/csv`): one header row, then a row
per item, RFC 4180 quoting, cells that a spreadsheet would run as a formula prefixed with '
(controller/domain/csv_cells.py)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import Request
from starlette.responses import Response

from controller.domain.csv_cells import csv_cell

CSV = "text/csv"


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


def csv_response(columns: Sequence[str], rows: Iterable[Sequence[Any]],
                 headers: dict[str, str] | None = None) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return Response(out.getvalue(), media_type=CSV, headers=headers)


def csv_content() -> dict[str, Any]:
    return {CSV: {"schema": {"type": "string"}}}
