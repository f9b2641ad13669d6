"""The agent's idea of the time: its own clock, or the controller's when its own is far off.

Small routers often have no real-time clock: they boot at the epoch or wherever the last shutdown
left them, and NTP may be blocked. Pushes expire after 24 hours, retired signing keys are refused
from a given time, certificates are renewed at 60-70% of their lifetime and telemetry periods
are checked against the controller's clock: with a clock days off, the agent would refuse every
push as expired (or keep a retired key) and stop enforcing silently. The controller stamps every
status answer with its time (over mTLS); the agent keeps the offset and, once it is past FAR_MS,
uses the controller's time for those judgements. The offset is reported, so fleet status shows the
router's clock is wrong.

Expiries on the router (nft element timeouts, sinkholed domains, which indicators the budget counts
as live) are judged by `enforcement_ms()`: the system clock corrected by the offset the agent that
reads the system clock last measured. A router whose clock runs two days ahead would otherwise drop a
7-day indicator five days early, silently.

TLS is the limit: a clock outside the certificates' validity (the epoch, say) fails the handshake
itself, before any time can be learnt from the controller: such a router needs its clock set (NTP).
`mssp-agent run` says so at start (`before_trust`) instead of leaving only TLS errors to read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

from cryptography import x509

from mssp.common.clock import CLOCK_TOLERANCE_MS as FAR_MS
from mssp.common.clock import now_ms as system_ms


class _Enforcement:
    offset_ms = 0  # system clock minus the controller's, when far off; else 0


def enforcement_ms() -> int:
    """The time expiries on this router are judged by (see the module docstring)."""
    return system_ms() - _Enforcement.offset_ms


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
        if self.local is system_ms:  # a clock of this host's (a test's made-up clock is not)
            _Enforcement.offset_ms = self.offset_ms if self.far_off else 0

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


def before_trust(ca_pem: bytes, now_s: float) -> str | None:
    """Why TLS cannot work on this router, when its clock is earlier than every CA it trusts was
    made (a router booted at the epoch): the handshake fails before the controller can tell us the
    time, so the operator must be told to set the clock. None when the clock may well be right."""
    try:
        starts = [c.not_valid_before_utc.timestamp() for c in x509.load_pem_x509_certificates(ca_pem)]
    except ValueError:
        return None
    if not starts or now_s >= min(starts):
        return None
    when = dt.datetime.fromtimestamp(now_s, dt.UTC).isoformat(timespec="seconds")
    made = dt.datetime.fromtimestamp(min(starts), dt.UTC).isoformat(timespec="seconds")
    return (f"this router's clock says {when}, before the controller's CA was made ({made}): TLS to the "
            "controller and the broker fails until the clock is set (enable NTP, or set it by hand)")

