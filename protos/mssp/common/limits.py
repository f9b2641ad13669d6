"""Limits the controller enforces and the agent must be able to honour, kept in one place.

The controller refuses an IOC or token lifetime above `MAX_TTL_SECONDS`; the agent renders element
timeouts up to that value for nft (both the JSON and the native syntax path are tested with
``nft -c`` at it) and clamps anything longer to it, so no expiry a push can carry makes a whole
ruleset fail to load.
"""

from __future__ import annotations

MAX_TTL_SECONDS = 10 * 365 * 24 * 3600  # 10 years (3650 days)
