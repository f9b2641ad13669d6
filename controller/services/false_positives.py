"""False positives: a tenant's report takes effect for it at once; enough tenants demote it for all.

A report adds the value to the tenant's policy bundle (`exempt`), pushed on its channel in the same
transaction: its gateways stop enforcing it from the shared channels (gateway_agent/exempt.py) while
every other tenant keeps it. When `threshold` distinct tenants of the alliance reported an indicator
the alliance promoted, the promotion is withdrawn (the claim of source "alliance" goes; an
operator's or a feed's claim on the alliance channel stays: that is the operator's call) and the
operator is told (the candidate reads "withdrawn", and a warning is logged). One hostile tenant
cannot demote a real C2 indicator for everyone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import func, true, update
from sqlmodel import Session, col, select

from controller.domain.errors import NotFound
from controller.domain.ioc import parse_ioc
from controller.domain.ioc_meta import parse_scope
from controller.domain.promotion import PROMOTED_SOURCE, PROMOTION_SCOPES
from controller.services.channels import append_push, lock_channel
from controller.services.claims import Key, claims_of, withdraw
from controller.services.policies import DEFAULT_BUNDLE, exempt_values
from controller.services.policy_bundles import set_exempt
from controller.services.scopes import scope_channel
from controller.services.tenants import hold_tenant
from controller.store import models as rows
from controller.store.db import Database
from controller.store.sighting_models import FalsePositive, SightingCandidate
from mssp.common.channels import ALLIANCE_CHANNEL, tenant_channel
from mssp.common.clock import now_ms
from mssp.v1 import common_pb2

log = logging.getLogger("mssp.controller.sightings")


@dataclass(frozen=True)
class FalsePositiveResult:
    value: str
    new: bool  # False: this tenant had reported it already (nothing changed)
    withdrawn: bool  # this report withdrew the alliance's promotion


def republish_bundle(s: Session, tenant: rows.Tenant) -> int:
    """The tenant's bundle with its current exemptions, stored and pushed (its policy version kept)."""
    bundle = common_pb2.PolicyBundle.FromString(tenant.policy_bundle or DEFAULT_BUNDLE)
    set_exempt(bundle, exempt_values(s, tenant.id))  # its gateways' override bundles too
    tenant.policy_bundle = bundle.SerializeToString(deterministic=True)
    s.add(tenant)
    return append_push(s, tenant_channel(tenant.id), policy=bundle)


class FalsePositives:
    def __init__(self, db: Database, threshold: int = 3) -> None:
        self.db = db
        self.threshold = threshold

    def report(self, tenant_id: str, value: str, *, by: str = "tenant") -> FalsePositiveResult:
        parsed = parse_ioc(value)
        key: Key = (int(parsed.kind), parsed.value)
        now = now_ms()
        with self.db.session() as s:
            tenant = s.get(rows.Tenant, tenant_id)
            if tenant is None or tenant.deleted_at_ms:
                raise NotFound("unknown tenant")
            # Lock order everywhere: tenant row, candidate, channel rows (by name: alliance and global sort
            # before tenant:...), then indicator rows.
            hold_tenant(s, tenant)
            if s.get(FalsePositive, (tenant_id, key[0], key[1])) is not None:
                return FalsePositiveResult(parsed.value, False, False)
            cand = s.exec(select(SightingCandidate).where(SightingCandidate.type == key[0],
                                                           SightingCandidate.value == key[1])
                          .with_for_update()).first()
            promoted = cand is not None and cand.state == "promoted" and cand.scope in PROMOTION_SCOPES
            channel = ALLIANCE_CHANNEL
            if promoted and cand is not None:
                channel = scope_channel(s, parse_scope(cand.scope))  # alliance, or global: the policy's
                lock_channel(s, channel)
            s.add(FalsePositive(tenant_id=tenant_id, type=key[0], value=key[1], reported_at_ms=now, by=by))
            s.flush()
            republish_bundle(s, tenant)
            withdrawn = promoted and cand is not None and self._maybe_withdraw(s, cand, channel, key, now)
            return FalsePositiveResult(parsed.value, True, withdrawn)

    def _maybe_withdraw(self, s: Session, cand: SightingCandidate, channel: str, key: Key, now: int) -> bool:
        """Withdraw the promotion (its channel and candidate locked by the caller) when enough tenants of
        the alliance reported it."""
        reporters = s.exec(select(func.count(func.distinct(FalsePositive.tenant_id)))
                           .join(rows.Tenant, col(rows.Tenant.id) == col(FalsePositive.tenant_id))
                           .where(FalsePositive.type == key[0], FalsePositive.value == key[1],
                                  col(rows.Tenant.sharing) == true())).one()
        if reporters < self.threshold:
            return False
        if PROMOTED_SOURCE not in claims_of(s, channel, [key]).get(key, {}):
            return False
        withdraw(s, channel, [(key, PROMOTED_SOURCE)], now)
        why = f"withdrawn: reported as a false positive by {reporters} organisations"
        s.exec(update(SightingCandidate).where(  # type: ignore[call-overload]
            col(SightingCandidate.id) == cand.id).values(state="dismissed", decided_by="tenants",
                                                          decided_at_ms=now, reason=why))
        log.warning("alliance indicator %s %s; review it with `msspctl sighting list --state dismissed`",
                    key[1], why)
        return True
