"""Client-side argument parsing that the wire format needs before a call: TENANT/NAME and durations."""

from __future__ import annotations

from controller.cli.client import CliError
from controller.domain.durations import parse_duration
from controller.domain.errors import InvalidInput


def parse_gateway_ref(raw: str) -> tuple[str, str]:
    """`acme/branch-1` -> ("acme", "branch-1"); anything else is an operator typo worth naming."""
    tenant, sep, name = raw.partition("/")
    if not sep or not tenant.strip() or not name.strip() or "/" in name:
        raise CliError(f"expected TENANT/NAME (e.g. acme/branch-1), got {raw!r}")
    return tenant.strip(), name.strip()


def parse_ttl_seconds(raw: str | None, flag: str) -> int:
    """A human duration as whole seconds; None (flag not given) is 0, the server's default."""
    if raw is None:
        return 0
    try:
        return int(parse_duration(raw).total_seconds())
    except InvalidInput as exc:
        raise CliError(f"{flag}: {exc}") from None
