"""Element and set timeouts as nft takes them.

nft 1.0.6's parser refuses a time value whose number has more than 8 digits ("value too large"):
``timeout 126144000s`` (1460 days) fails while ``timeout 1460d`` loads, so the native renderer
writes days/hours/minutes/seconds (``3650d``, ``1d2h3m4s``). The JSON path takes plain seconds.
Both clamp to the controller's longest TTL (mssp.common.limits), so a push can carry no expiry
that makes a whole transaction fail: an IOC further out than that is re-rendered with its real
remaining time by any full apply before the clamped timeout runs out.
"""

from __future__ import annotations

from mssp.common.limits import MAX_TTL_SECONDS

MAX_TIMEOUT_S = MAX_TTL_SECONDS
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def timeout_seconds(expires_at_ms: int, now_ms: int) -> int:
    """Whole seconds left, rounded up (an IOC blocks until its expiry, never less), at most
    MAX_TIMEOUT_S. <= 0: expired."""
    return min(-((now_ms - expires_at_ms) // 1000), MAX_TIMEOUT_S)


def nft_duration(seconds: int) -> str:
    """`seconds` (1..MAX_TIMEOUT_S) in nft's unit syntax: ``3650d``, ``1d2h3m4s``, ``59s``."""
    if type(seconds) is not int or not 1 <= seconds <= MAX_TIMEOUT_S:
        raise ValueError(f"timeout {seconds!r} is outside 1..{MAX_TIMEOUT_S} seconds")
    parts = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
