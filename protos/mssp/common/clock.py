"""The one wall clock in milliseconds that controller, agent and wire records share."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
