"""The agent's idea of the time: its own clock, or the controller's when its own is far off.

Small routers often have no real-time clock: they boot at the epoch or wherever the last shutdown
left them, and NTP may be blocked. Pushes expire after 24 hours, retired signing keys are refused
from a given time, certificates are renewed at 60-70% of their lifetime and telemetry periods
are checked against the controller's clock: with a clock days off, the agent would refuse every
push as expired (or keep a retired key) and stop enforcing silently. The controller stamps every
status answer with its time (over mTLS); the agent keeps the offset and, once it is past FAR_MS,
uses the controller's time for those judgements. The offset is reported, so fleet status shows the
router's clock is wrong.

TLS is the limit: a clock outside the certificates' validity (the epoch, say) fails the handshake
itself, before any time can be learnt from the controller: such a router needs its clock set (NTP).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mssp.common.clock import CLOCK_TOLERANCE_MS as FAR_MS
from mssp.common.clock import now_ms as system_ms


class AgentClock:
    def __init__(self, local: Callable[[], int] = system_ms) -> None:
        self.local = local
        self.offset_ms = 0  # router minus controller, as last measured
        self.known = asyncio.Event()  # set by the first measurement

    def observe(self, controller_ms: int, sent_local_ms: int, received_local_ms: int) -> None:
        """One answer stamped `controller_ms`, asked at `sent` and received at `received` (local)."""
        if controller_ms <= 0 or received_local_ms < sent_local_ms:
            return  # an older controller, or the local clock jumped meanwhile
        self.offset_ms = (sent_local_ms + received_local_ms) // 2 - controller_ms
        self.known.set()

    @property
    def measured(self) -> bool:
        return self.known.is_set()

    @property
    def far_off(self) -> bool:
        return abs(self.offset_ms) > FAR_MS

    def now_ms(self) -> int:
        local = self.local()
        return local - self.offset_ms if self.far_off else local

    def now_s(self) -> float:
        return self.now_ms() / 1000
