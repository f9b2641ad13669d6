"""Names of tenants, gateways and plans.

Tenant and gateway names end up in NATS subjects, certificate subjects, file names and
nft object names, so they are held to a DNS-label-like slug and never canonicalized
silently: an operator who typed ``Acme`` is told to use ``acme``.
"""

from __future__ import annotations

import re
from typing import Any

from controller.domain.errors import InvalidInput

SLUG_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
MAX_SLUG_LEN = 63

KNOWN_PLANS: tuple[str, ...] = ("standard", "pro", "enterprise")
DEFAULT_PLAN = "standard"

_SHOW_MAX = 60


def show(value: Any) -> str:
    """Render a user-supplied value for an error message: quoted, escaped, one line, bounded.

    Hostile input (newlines, NUL, terminal escapes) must never reach a log line or a
    terminal as-is, and a 1 MB value must not become a 1 MB message.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) > _SHOW_MAX:
        return repr(text[:_SHOW_MAX]) + "..."
    return repr(text)


def type_name(value: Any) -> str:
    """Name a Python value's type the way a YAML/JSON author thinks of it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _validate_slug(kind: str, name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidInput(f"{kind} name must be a string, got {type_name(name)}")
    if not name:
        raise InvalidInput(f"{kind} name is empty")
    if len(name) > MAX_SLUG_LEN:
        raise InvalidInput(
            f"{kind} name {show(name)} is too long ({len(name)} characters, max {MAX_SLUG_LEN})"
        )
    if SLUG_RE.fullmatch(name):
        return name
    lowered = name.lower()
    if lowered != name and SLUG_RE.fullmatch(lowered):
        raise InvalidInput(f"{kind} name {show(name)} must be lower-case; did you mean {show(lowered)}?")
    if name.startswith("-") or name.endswith("-"):
        raise InvalidInput(f"{kind} name {show(name)} must not start or end with '-'")
    raise InvalidInput(f"invalid {kind} name {show(name)}: use only lower-case letters a-z, digits and '-'")


def validate_tenant_name(name: str) -> str:
    """A tenant slug: ``[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?``."""
    return _validate_slug("tenant", name)


def validate_operator_slug(name: str) -> str:
    """An operator's name: recorded in the audit log and as an indicator's source."""
    return _validate_slug("operator", name)


def validate_gateway_name(name: str) -> str:
    """A gateway slug, unique within its tenant; same shape as a tenant name."""
    return _validate_slug("gateway", name)


def validate_plan(plan: str | None = None) -> str:
    """A billing plan; ``None`` means the default plan. Case and surrounding space are forgiven."""
    if plan is None:
        return DEFAULT_PLAN
    if not isinstance(plan, str):
        raise InvalidInput(f"plan must be a string, got {type_name(plan)}")
    canonical = plan.strip().lower()
    if canonical not in KNOWN_PLANS:
        raise InvalidInput(f"unknown plan {show(plan)}; known plans: {', '.join(KNOWN_PLANS)}")
    return canonical
