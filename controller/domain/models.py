"""What the service layer returns: frozen values, no transport types. Field names are those of the
operator API's messages (protos/mssp/v1/operator.proto), so the gRPC adapter converts field by
field (controller/grpc_api/convert.py) and any other face (HTTP, a feed importer) reads the same
names. Pushes stay protobuf: they are the wire format gateways verify, stored as such."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from controller.domain.ioc import IocKind


class GatewayStatus(StrEnum):
    """A gateway's lifecycle: pending -> enrolled -> revoked (pending -> revoked too). Stored as
    the plain string (the gateway.status column); a member compares equal to it."""

    PENDING = "pending"
    ENROLLED = "enrolled"
    REVOKED = "revoked"


class SeqPair(Protocol):
    """Anything carrying the channel seqs (Versions, or the wire message an agent sent)."""

    @property
    def global_seq(self) -> int: ...

    @property
    def tenant_seq(self) -> int: ...

    @property
    def alliance_seq(self) -> int: ...


@dataclass(frozen=True)
class Versions:
    """Seqs of the global channel, of one tenant's channel and (for a tenant that shares) of the
    alliance channel: what a gateway applied or should."""

    global_seq: int = 0
    tenant_seq: int = 0
    alliance_seq: int = 0


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    plan: str
    created_at_ms: int
    gateway_count: int  # not revoked
    policy_version: int
    tenant_seq: int
    ioc_count: int
    sharing: bool = False


@dataclass(frozen=True)
class Refusal:
    """Something a gateway was sent but does not enforce, as it reported it (made inert)."""

    kind: str
    value: str
    reason: str


@dataclass(frozen=True)
class Gateway:
    """One gateway as the fleet views show it (fleet row, `gateway show`)."""

    id: str
    tenant: str  # the tenant's name
    name: str
    status: GatewayStatus
    created_at_ms: int
    enrolled_at_ms: int
    last_seen_ms: int
    online: bool
    desired: Versions
    applied: Versions
    converged: bool
    agent_version: str
    backend: str
    last_error: str
    cert_serial: str
    refusals: tuple[Refusal, ...] = ()
    refusals_total: int = 0
    ioc_budget: int = 0  # the most indicators it enforces (0: not reported)
    left_out_by_budget: int = 0  # desired indicators it leaves out for its budget (a state, not a refusal)
    cert_not_after_ms: int = 0  # its client certificate's expiry (0: not enrolled)
    cert_renewed_at_ms: int = 0  # the agent's last renewal (0: never)
    renewal_overdue: bool = False  # past three quarters of the certificate's lifetime, not renewed
    clock_offset_ms: int = 0  # its router's clock minus ours, as last reported


@dataclass(frozen=True)
class FleetStatus:
    gateways: tuple[Gateway, ...]
    total: int
    online: int
    converged: int


@dataclass(frozen=True)
class PolicyInfo:
    tenant: str
    version: int
    yaml: str
    bundle: bytes  # the compiled PolicyBundle, serialized as gateways receive it
    updated_at_ms: int = 0
    seq: int = 0  # the tenant channel seq that carried this version (set by set_policy)
    gateway: str = ""  # a gateway's override (yaml "" when it has none); "" for the tenant's policy
    effective_yaml: str = ""  # for a gateway: the merged document it enforces
    unchanged: bool = False  # a rollback to the document in force: nothing stored
    summary: str = ""  # what the stored version changed


@dataclass(frozen=True)
class Indicator:
    """An indicator as stored: canonical value, kind, expiry (0 = never), confidence, source."""

    type: IocKind
    value: str
    expires_at_ms: int
    confidence: int
    source: str


@dataclass(frozen=True)
class IocRecord:
    ioc: Indicator
    scope: str  # "global" or "tenant:NAME"
    created_at_ms: int
    seq: int  # the channel seq that carried the last change
    refreshed: bool = False  # add_ioc: the scope already held it (fields not given were kept)
    sources: tuple[str, ...] = ()  # list_iocs: every source claiming it (services/claims.py)


@dataclass(frozen=True)
class RemoveIocResult:
    removed: bool
    seq: int  # the push that carried the removal, or the channel head when nothing was removed
    held_in: tuple[str, ...] = ()  # when not removed: the scopes that do hold the value


@dataclass(frozen=True)
class GatewayIdentity:
    gateway_id: str
    tenant_id: str
    sharing: bool = False  # its tenant is in the alliance


@dataclass(frozen=True)
class StatusUpdate:
    gateway_id: str
    applied: SeqPair
    agent_version: str
    backend: str
    last_error: str
    seen_at_ms: int
    refusals: tuple[tuple[str, str, str], ...] = ()  # (kind, value, reason), see controller/refusals.py
    refusals_total: int = 0
    ioc_budget: int = 0
    left_out_by_budget: int = 0
    alliance_aware: bool = False
    rotation_aware: bool = False
    clock_offset_ms: int = 0  # the router's clock minus ours, as the agent measured it
    ca_rollover_aware: bool = False
