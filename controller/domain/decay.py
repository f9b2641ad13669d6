"""How an indicator's score falls with time since a source last said it: MISP's polynomial model.

score = base x (1 - (t / lifetime) ^ (1 / speed)), clamped at 0, where base is the claim's
confidence and t the time since it was last seen (a feed refresh, a re-import, a sighting reset it).
A claim whose score is below the threshold is removed by housekeeping; the indicator goes with its
last claim. An operator's own `ioc add` does not decay: it says how long it lasts (--ttl).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.domain.errors import InvalidInput

DAY_MS = 86_400_000


@dataclass(frozen=True)
class DecayModel:
    lifetime_days: float = 120.0
    speed: float = 2.0
    threshold: int = 30

    def __post_init__(self) -> None:
        if not self.lifetime_days > 0:
            raise InvalidInput(f"decay lifetime must be positive, got {self.lifetime_days} days")
        if not self.speed > 0:
            raise InvalidInput(f"decay speed must be positive, got {self.speed}")
        if not 0 <= self.threshold <= 100:
            raise InvalidInput(f"decay threshold must be 0-100, got {self.threshold}")

    def score(self, base: int, age_ms: int) -> float:
        t = max(0, age_ms) / (self.lifetime_days * DAY_MS)
        return max(0.0, base * (1 - t ** (1 / self.speed))) if t < 1 else 0.0

    def cutoff_age_ms(self, base: int) -> int:
        """The age at which a claim of this confidence falls below the threshold. A claim stated at
        or below it already is: it lasts one lifetime (its score reaches 0), or a feed that states
        it on every run would have it withdrawn and added back, one push each, forever."""
        if base <= self.threshold:
            return int(self.lifetime_days * DAY_MS)
        return int(self.lifetime_days * DAY_MS * (1 - self.threshold / base) ** self.speed)
