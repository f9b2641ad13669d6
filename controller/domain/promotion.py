"""When sightings make an indicator everyone's: the promotion policy and its decision (pure).

Two tiers. The broad one needs several organisations: `min_tenants` distinct tenants in the
alliance saw it, and the indicator is held with at least `min_confidence` where they saw it. The
fast one lets one organisation's strong evidence protect the others: a hit on an indicator the
tenant's own channel holds (its own feed or its analyst) at `fast_confidence` or more. Tenants
outside the alliance never count. With `require_approval` nothing is automatic: candidates wait
for `msspctl sighting promote`.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.domain.errors import InvalidInput
from controller.domain.ioc_meta import validate_confidence, validate_ttl

PROMOTION_SCOPES = ("alliance", "global")
PROMOTED_SOURCE = "alliance"  # the claim a promotion adds: it names no tenant


@dataclass(frozen=True)
class PromotionPolicy:
    min_tenants: int = 3
    min_confidence: int = 70
    scope: str = "alliance"
    ttl_seconds: int = 7 * 86400
    require_approval: bool = False
    fast_confidence: int = 90  # 0: no fast tier
    k: int = 3  # tenants see "seen by N organisations" only when N >= k
    false_positive_tenants: int = 3  # distinct tenants whose reports withdraw a promotion
    beacon_score: int = 90  # fast tier: one router's beacon score at least this (0: off)

    def __post_init__(self) -> None:
        n = self.min_tenants
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidInput(f"promotion min_tenants must be a whole number >= 1, got {n!r}")
        validate_confidence(self.min_confidence)
        validate_confidence(self.fast_confidence)
        validate_confidence(self.beacon_score)
        validate_ttl(self.ttl_seconds)
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 2:
            raise InvalidInput(f"promotion k must be a whole number >= 2, got {self.k!r}")
        fp = self.false_positive_tenants
        if isinstance(fp, bool) or not isinstance(fp, int) or fp < 1:
            raise InvalidInput(f"promotion false_positive_tenants must be a whole number >= 1, got {fp!r}")
        if self.scope not in PROMOTION_SCOPES:
            raise InvalidInput(
                f"promotion scope must be one of {', '.join(PROMOTION_SCOPES)}, got {self.scope!r}")


@dataclass(frozen=True)
class Evidence:
    """What the sightings of one indicator add up to (sharing tenants only)."""

    sharing_tenants: int
    confidence: int  # the highest claim on it in the channels of the tenants that saw it
    own_confidence: int  # the highest claim on it in a sighting tenant's own channel
    beacon_score: int = 0  # the highest periodicity score a sharing tenant's router gave it


def decide(policy: PromotionPolicy, evidence: Evidence) -> tuple[bool, str]:
    """(promote now, why or why not) for a candidate."""
    if evidence.sharing_tenants == 0:
        return False, "seen only by tenants outside the alliance"
    beacon = bool(policy.beacon_score) and evidence.beacon_score >= policy.beacon_score
    fast = beacon or (policy.fast_confidence and evidence.own_confidence >= policy.fast_confidence)
    broad = evidence.sharing_tenants >= policy.min_tenants and evidence.confidence >= policy.min_confidence
    if not (fast or broad):
        return False, (f"seen by {evidence.sharing_tenants} of the {policy.min_tenants} organisations needed "
                       f"(confidence {evidence.confidence}, {policy.min_confidence} needed)")
    why = (f"a router scored it a beacon at {evidence.beacon_score}" if beacon else
           f"a tenant's own indicator at confidence {evidence.own_confidence} was hit" if fast else
           f"seen by {evidence.sharing_tenants} organisations at confidence {evidence.confidence}")
    if policy.require_approval:
        return False, f"{why}; waiting for approval (require_approval)"
    return True, why
