"""Refusals a gateway reports (what it was sent but does not enforce), from report to screen.

They come from a gateway, so they are bounded and made inert at ingest like every other text it
sends (mssp.common.text), stored on the gateway row as JSON, and shown by `fleet status` and
`gateway show`. Any refusal makes the gateway not converged.
"""

from __future__ import annotations

import json
import logging

from controller.domain.models import Refusal
from mssp.common.text import clean_line
from mssp.v1 import gateway_pb2

log = logging.getLogger("mssp.controller.status")

MAX_STORED = 50  # the agent sends at most this many (and the total)
_LIMITS = (32, 256, 256)  # kind, value, reason

RefusalRow = tuple[str, str, str]


def reported(report: gateway_pb2.StatusReport) -> tuple[tuple[RefusalRow, ...], int]:
    """(the first MAX_STORED refusals as inert, bounded rows, the total the gateway counted)."""
    rows = tuple(
        (clean_line(r.kind[:64], _LIMITS[0]), clean_line(r.value[:512], _LIMITS[1]),
         clean_line(r.reason[:512], _LIMITS[2]))
        for r in report.refusals[:MAX_STORED]
    )
    return rows, max(report.refusals_total, len(report.refusals))


def encode(rows: tuple[RefusalRow, ...]) -> str:
    return json.dumps([list(r) for r in rows]) if rows else ""


def decode(text: str) -> list[Refusal]:
    """The stored rows; a damaged column reads as nothing rather than failing a listing."""
    if not text:
        return []
    try:
        rows = json.loads(text)
        return [Refusal(kind=str(k), value=str(v), reason=str(r)) for k, v, r in rows]
    except (ValueError, TypeError):
        log.warning("unreadable refusals column: %.80r", text)
        return []
