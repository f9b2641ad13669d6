"""Human durations for IOC expiry and report windows: ``90s``, ``30m``, ``24h``, ``7d``, ``2w``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

from controller.domain.errors import InvalidInput
from controller.domain.names import show, type_name
from mssp.common.limits import MAX_TTL_SECONDS

UNIT_SECONDS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DURATION = timedelta(seconds=MAX_TTL_SECONDS)

_TOKEN_RE = re.compile(r"(\d+)([a-zA-Z]*)")
_SHAPE_RE = re.compile(r"[0-9a-zA-Z]+")
_MAX_INPUT_LEN = 64


def parse_duration(raw: str) -> timedelta:
    """Parse a positive duration of one or more ``<integer><unit>`` parts (each unit at most once)."""
    if not isinstance(raw, str):
        raise InvalidInput(f"duration must be a string like '24h', got {type_name(raw)}")
    text = raw.strip()
    if not text:
        raise InvalidInput("duration is empty; use e.g. '90s', '30m', '24h', '7d', '2w' or '1h30m'")
    if len(text) > _MAX_INPUT_LEN:
        raise InvalidInput(f"duration {show(text)} is too long")
    if text.startswith("-"):
        raise InvalidInput(f"duration {show(text)} is negative; durations must be positive")
    if not _SHAPE_RE.fullmatch(text):
        raise InvalidInput(
            f"invalid duration {show(text)}: use whole numbers with units, like '30m' or '1h30m' "
            "(units: s, m, h, d, w)"
        )
    pos = 0
    total = 0
    seen: set[str] = set()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match:
            raise InvalidInput(
                f"invalid duration {show(text)}: expected parts like '30m' or '1h30m' (units: s, m, h, d, w)"
            )
        number, unit = match.groups()
        if not unit:
            raise InvalidInput(
                f"duration {show(text)} is missing a unit after {number} (units: s, m, h, d, w)"
            )
        if unit not in UNIT_SECONDS:
            raise InvalidInput(f"unknown unit {show(unit)} in duration {show(text)}; use s, m, h, d or w")
        if unit in seen:
            raise InvalidInput(f"unit {show(unit)} appears twice in duration {show(text)}")
        seen.add(unit)
        total += int(number) * UNIT_SECONDS[unit]
        # Checked per part so a huge number can never overflow timedelta.
        if total > MAX_DURATION.total_seconds():
            raise InvalidInput(f"duration {show(text)} is longer than the maximum of 10 years")
        pos = match.end()
    if total == 0:
        raise InvalidInput(f"duration {show(text)} is zero; durations must be positive")
    return timedelta(seconds=total)
