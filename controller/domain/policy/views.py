"""What policy history, diffs and dry runs answer with (plain data; the gRPC layer converts it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VersionInfo:
    version: int
    created_at_ms: int
    created_by: str
    summary: str
    rules: int
    default_action: str  # "" when an override inherits the tenant's
    removed: bool = False  # an override's removal
    current: bool = False


@dataclass(frozen=True)
class PolicyDiff:
    tenant: str
    gateway: str
    from_version: int
    to_version: int  # 0 in a dry run: the document given
    unified_diff: str
    rules_added: list[str] = field(default_factory=list)
    rules_removed: list[str] = field(default_factory=list)
    rules_changed: list[str] = field(default_factory=list)
    rules_reordered: bool = False
    default_before: str = ""
    default_after: str = ""


@dataclass(frozen=True)
class Impact:
    """A gateway that would get a new policy; `shadows`: what its override replaces of the tenant's."""

    gateway: str
    has_override: bool
    shadows: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Preview:
    diff: PolicyDiff
    gateways: list[Impact]
    unchanged: bool
