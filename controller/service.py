"""The controller's use cases behind one object: tenants, gateways and enrollment, policies, IOCs,
channels and the outbox, fleet views (one module each in controller/services/).

Transport-free (gRPC servicers call it from a thread; an HTTP face or a feed importer may too):
arguments and answers are domain values (controller/domain/models.py), errors are the controller's
own (controller/domain/errors.py). Each aggregate is also reachable on its own (`service.iocs`...);
the methods here delegate, so callers need not know which aggregate holds a use case.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from controller import resync
from controller.domain.decay import DecayModel
from controller.domain.models import (
    FleetStatus,
    Gateway,
    GatewayIdentity,
    IocRecord,
    PolicyInfo,
    RemoveIocResult,
    SeqPair,
    StatusUpdate,
    Tenant,
    Versions,
)
from controller.domain.promotion import PromotionPolicy
from controller.enrollment import EnrollmentTicket
from controller.intel.guard import GuardConfig, NeverBlockGuard
from controller.services.alliance import Alliance
from controller.services.allowlist import Allowlist, GuardSettings
from controller.services.apikeys import ApiKeys
from controller.services.audit import AuditLog
from controller.services.billing import Billing
from controller.services.channels import PUSH_LOG_KEEP, Channels
from controller.services.decay import decay_claims
from controller.services.false_positives import FalsePositives
from controller.services.feeds import Feeds
from controller.services.fleet import Fleet
from controller.services.gateways import TOKEN_PREFIX, Gateways
from controller.services.intel_export import Exporter
from controller.services.intel_import import Importer
from controller.services.iocs import ClaimView, Iocs, show_ioc
from controller.services.operators import Operators
from controller.services.policies import Policies
from controller.services.read_cache import ReadCache
from controller.services.renewal import Renewals
from controller.services.shared_collection import SharedCollection
from controller.services.sightings import Sightings
from controller.services.tenant_scope import TenantScope
from controller.services.tenants import Tenants
from controller.store.db import Database
from mssp.v1 import push_pb2

__all__ = ["PUSH_LOG_KEEP", "TOKEN_PREFIX", "ControllerService", "GatewayIdentity", "StatusUpdate"]


class ControllerService:
    def __init__(
        self, db: Database, *, token_ttl_seconds: int = 24 * 3600, online_window_seconds: float = 90.0,
        plans_path: Path | None = None, read_cache_seconds: float = 30.0, guard: GuardSettings | None = None,
        decay: DecayModel | None = None, feed_dir: Path | None = None,
        promotion: PromotionPolicy | None = None,
    ) -> None:
        self.db = db
        self.tenants = Tenants(db)
        self.alliance = Alliance(db)
        self.renewals = Renewals(db)
        self.fleet = Fleet(db, online_window_ms=int(online_window_seconds * 1000))
        self.gateways = Gateways(db, self.fleet, token_ttl_seconds=token_ttl_seconds)
        self.policies = Policies(db)
        self.iocs = Iocs(db, guard)
        self.importer = Importer(db, guard)
        self.allowlist = Allowlist(db)
        self.feeds = Feeds(db, self.importer, feed_dir)
        self.exporter = Exporter(db)
        self.shared = SharedCollection(db)  # what partners read over TAXII
        self.sightings = Sightings(db, promotion, guard=lambda: self.iocs.guard_settings)
        self.false_positives = FalsePositives(db, self.sightings.policy.false_positive_tenants)
        self.decay_model = decay or DecayModel()
        self.channels = Channels(db)
        self.apikeys = ApiKeys(db)
        self.operators = Operators(db)  # named operator credentials (the bootstrap one is a file)
        self.audit = AuditLog(db)
        self.billing = Billing(db, plans_path)
        # Tenant API read models (controller/services/tenant_scope.py); 0 seconds: no caching.
        self.read_cache, self.read_cache_seconds = ReadCache(), read_cache_seconds

    def run_feeds(self) -> int:
        return self.feeds.run_due()

    def show_ioc(self, value: str, scope: str = "global") -> tuple[IocRecord, list[ClaimView]]:
        return show_ioc(self.db, value, scope, self.decay_model)

    def decay_iocs(self) -> int:
        return decay_claims(self.db, self.decay_model)

    def set_guard(self, guard: GuardSettings) -> None:
        """The controller's own addresses are known once its listeners are bound."""
        # A bad setting (an own address that does not parse) fails start-up, not every later ioc add.
        NeverBlockGuard(GuardConfig(guard.max_prefix_v4, guard.max_prefix_v6, guard.own_addresses))
        self.iocs.guard_settings = self.importer.guard_settings = guard

    # -- tenants -------------------------------------------------------------------------------

    def create_tenant(self, name: str, plan: str | None = None) -> Tenant:
        return self.tenants.create_tenant(name, plan)

    def list_tenants(self) -> list[Tenant]:
        return self.tenants.list_tenants()

    def get_tenant(self, name: str) -> Tenant:
        return self.tenants.get_tenant(name)

    def set_plan(self, name: str, plan: str) -> Tenant:
        return self.tenants.set_plan(name, plan)

    def set_sharing(self, name: str, sharing: bool) -> tuple[Tenant, list[str]]:
        """In or out of the alliance; the NATS keys whose JWTs were re-issued (services/alliance.py)."""
        return self.alliance.set_sharing(name, sharing)

    def delete_tenant(self, name: str) -> tuple[Tenant, int, list[str]]:
        """(tenant, gateways revoked, NATS keys to revoke on the broker)."""
        return self.tenants.delete_tenant(name)

    def tenant_id(self, name: str) -> str:
        return self.tenants.tenant_id(name)

    def tenant_names(self) -> dict[str, str]:
        return self.tenants.tenant_names()

    def upload_thresholds(self, tenant_id: str) -> list[tuple[str, int]]:
        return self.tenants.upload_thresholds(tenant_id)

    def for_tenant(self, tenant_id: str) -> TenantScope:
        """What one tenant may read (the tenant API): every query scoped to `tenant_id`."""
        return TenantScope(self, tenant_id)

    # -- gateways and enrollment ---------------------------------------------------------------

    def add_gateway(
        self, tenant_name: str, name: str, token_ttl_seconds: int | None = None
    ) -> tuple[Gateway, str, int]:
        return self.gateways.add_gateway(tenant_name, name, token_ttl_seconds)

    def issue_token(
        self, tenant_name: str, name: str, token_ttl_seconds: int | None = None
    ) -> tuple[Gateway, str, int, bool]:
        return self.gateways.issue_token(tenant_name, name, token_ttl_seconds)

    def revoke_gateway(self, tenant_name: str, name: str) -> tuple[Gateway, str]:
        return self.gateways.revoke_gateway(tenant_name, name)

    def delete_gateway(self, tenant_name: str, name: str) -> tuple[Gateway, str]:
        return self.gateways.delete_gateway(tenant_name, name)

    def redeem_enrollment_token(self, secret: str) -> EnrollmentTicket:
        return self.gateways.redeem_enrollment_token(secret)

    def complete_enrollment(
        self, gateway_id: str, *, cert_serial: str, nats_public_key: str, agent_version: str,
        alliance_aware: bool = False, cert_validity_ms: tuple[int, int] = (0, 0),
        rotation_aware: bool = False,
    ) -> Versions:
        return self.gateways.complete_enrollment(gateway_id, cert_serial=cert_serial,
                                                 nats_public_key=nats_public_key, agent_version=agent_version,
                                                 alliance_aware=alliance_aware,
                                                 cert_validity_ms=cert_validity_ms,
                                                 rotation_aware=rotation_aware)

    def gateway_identity_by_serial(self, serial: str) -> GatewayIdentity | None:
        return self.gateways.gateway_identity_by_serial(serial)

    def record_statuses(self, updates: Sequence[StatusUpdate]) -> None:
        self.gateways.record_statuses(updates)

    # -- fleet views ---------------------------------------------------------------------------

    def list_gateways(self, tenant_name: str | None = None) -> list[Gateway]:
        return self.fleet.list_gateways(tenant_name)

    def get_gateway(self, tenant_name: str, name: str) -> Gateway:
        return self.fleet.get_gateway(tenant_name, name)

    def fleet_status(self, tenant_name: str | None = None) -> FleetStatus:
        return self.fleet.fleet_status(tenant_name)

    def gateway_names(self, tenant_id: str | None = None) -> dict[str, str]:
        return self.fleet.gateway_names(tenant_id)

    # -- policies ------------------------------------------------------------------------------

    def set_policy(self, tenant_name: str, text: str) -> PolicyInfo:
        return self.policies.set_policy(tenant_name, text)

    def get_policy(self, tenant_name: str) -> PolicyInfo:
        return self.policies.get_policy(tenant_name)

    # -- IOCs ----------------------------------------------------------------------------------

    def add_ioc(
        self, value: str, scope: str = "global", *, ttl_seconds: int | None = None, source: str | None = None,
        confidence: int | None = None,
    ) -> IocRecord:
        return self.iocs.add_ioc(value, scope, ttl_seconds=ttl_seconds, source=source, confidence=confidence)

    def remove_ioc(self, value: str, scope: str = "global") -> RemoveIocResult:
        return self.iocs.remove_ioc(value, scope)

    def list_iocs(self, scope: str | None = None) -> list[IocRecord]:
        return self.iocs.list_iocs(scope)

    def expire_iocs(self) -> int:
        return self.iocs.expire_iocs()

    # -- channels: heads, outbox, resync -------------------------------------------------------

    def desired_versions(self, tenant_id: str) -> Versions:
        return self.channels.desired_versions(tenant_id)

    def channel_heads(self) -> dict[str, int]:
        return self.channels.channel_heads()

    def published_heads(self) -> dict[str, int]:
        return self.channels.published_heads()

    def unpublished_outbox(self, limit: int = 1000) -> list[tuple[int, push_pb2.Push]]:
        return self.channels.unpublished_outbox(limit)

    def mark_published(self, ids: Sequence[int]) -> None:
        self.channels.mark_published(ids)

    def prune_push_log(self, keep: int = PUSH_LOG_KEEP) -> int:
        return self.channels.prune_push_log(keep)

    def sync_pushes(
        self, tenant_id: str, applied: SeqPair, *, force_snapshot: bool = False, alliance: bool = False
    ) -> list[push_pb2.Push]:
        """What brings a gateway from `applied` to now: deltas or a snapshot (see controller.resync)."""
        return resync.sync_pushes(self.db, tenant_id, applied, force_snapshot=force_snapshot,
                                  alliance=alliance)
