"""What travels with an IOC value: who it applies to (scope), how sure we are (confidence), where
it came from (source). Validated here because reports, feeds and the agent compare against them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from controller.domain.errors import InvalidInput
from controller.domain.names import show, type_name, validate_tenant_name
from mssp.common.limits import MAX_TTL_SECONDS

DEFAULT_CONFIDENCE = 80
DEFAULT_SOURCE = "operator"
FEED_SOURCE_PREFIX = "feed:"  # feed NAME's claims have source feed:NAME; nobody else may use it

_SOURCE_RE = re.compile(r"[A-Za-z0-9_.:@/ -]{1,64}")


def validate_confidence(n: int) -> int:
    """Confidence is a percentage the agent and reports compare against thresholds."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise InvalidInput(f"confidence must be an integer 0-100, got {type_name(n)}")
    if not 0 <= n <= 100:
        raise InvalidInput(f"confidence {n} is out of range 0-100")
    return n


def validate_ttl(seconds: int) -> int:
    """A time to live in seconds: 0 (never expires) up to MAX_TTL_SECONDS."""
    if not 0 <= seconds <= MAX_TTL_SECONDS:
        raise InvalidInput(f"ttl must be between 0 (never expires) and 10 years, got {seconds}s")
    return seconds


def validate_source(s: str | None = None) -> str:
    """Where an IOC came from (feed name, analyst); ``None`` means the operator."""
    if s is None:
        return DEFAULT_SOURCE
    if not isinstance(s, str):
        raise InvalidInput(f"source must be a string, got {type_name(s)}")
    text = s.strip(" ")
    if not text:
        raise InvalidInput("source is empty")
    if len(text) > 64:
        raise InvalidInput(f"source {show(text)} is too long ({len(text)} characters, max 64)")
    if not _SOURCE_RE.fullmatch(text):
        raise InvalidInput(
            f"source {show(text)} has invalid characters (allowed: letters, digits, space and -_.:@/)"
        )
    return text


@dataclass(frozen=True)
class Scope:
    """Who an IOC applies to: every gateway (global), the gateways of the tenants that share
    (``alliance=True``), or one tenant's gateways (``tenant``)."""

    tenant: str | None = None
    alliance: bool = False

    def __post_init__(self) -> None:
        if self.tenant is not None:
            validate_tenant_name(self.tenant)
            if self.alliance:
                raise InvalidInput("a scope is one tenant or the alliance, not both")

    def __str__(self) -> str:
        if self.alliance:
            return "alliance"
        return "global" if self.tenant is None else f"tenant:{self.tenant}"


GLOBAL_SCOPE = Scope(None)
ALLIANCE_SCOPE = Scope(None, alliance=True)


def parse_scope(raw: str) -> Scope:
    """Parse ``global``, ``alliance`` or ``tenant:NAME``; the inverse of ``str(scope)``."""
    if not isinstance(raw, str):
        raise InvalidInput(f"scope must be a string, got {type_name(raw)}")
    if raw == "global":
        return GLOBAL_SCOPE
    if raw == "alliance":
        return ALLIANCE_SCOPE
    if raw.startswith("tenant:"):
        return Scope(validate_tenant_name(raw[len("tenant:") :]))
    raise InvalidInput(f"invalid scope {show(raw)}: use 'global', 'alliance' or 'tenant:NAME'")
