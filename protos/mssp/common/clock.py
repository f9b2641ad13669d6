"""The one wall clock in milliseconds that controller, agent and wire records share."""

from __future__ import annotations

import time

# Within this much, a router's clock is taken as right (gateway_agent/clock.py; fleet status warns
# past it): an offset is only measured as well as one round trip allows.
CLOCK_TOLERANCE_MS = 30_000


def now_ms() -> int:
    return int(time.time() * 1000)
