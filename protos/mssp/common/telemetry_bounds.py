"""The longest period one telemetry batch may cover, shared by the agent (which never makes a longer
one) and the controller (which refuses a longer one: it would bill online time nobody measured)."""

from __future__ import annotations

# At the default 30 s interval a batch covers 30 s; ten intervals leave room for a late tick on a
# loaded router. An agent whose clock jumped or that slept longer reports only the last MAX_PERIOD_MS.
MAX_PERIOD_MS = 5 * 60 * 1000


def clamp_period_start(start_ms: int, end_ms: int) -> int:
    """The period start an agent may claim for a batch ending at end_ms."""
    return min(max(start_ms, end_ms - MAX_PERIOD_MS), end_ms)
