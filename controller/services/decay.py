"""Housekeeping of decayed claims (domain/decay.py): each one whose score fell below the threshold
is withdrawn, and its indicator goes with its last claim, pushed like an expiry.

A feed's claims count as seen at the feed's last successful run: a refresh re-states them all
without rewriting a million rows.
"""

from __future__ import annotations

from sqlmodel import col, select

from controller.domain.decay import DecayModel
from controller.services.channels import lock_channel
from controller.services.claims import Key, withdraw
from controller.services.intel_import import FEED_SOURCE_PREFIX
from controller.store.db import Database
from controller.store.intel_models import Feed, IocClaim
from mssp.common.clock import now_ms


def decay_claims(db: Database, model: DecayModel, now: int | None = None) -> int:
    """Withdraw decayed claims; returns indicators removed."""
    now = now_ms() if now is None else now
    removed = 0
    with db.session() as s:
        feeds = s.exec(select(Feed.name, Feed.last_success_ms))
        refreshed = {FEED_SOURCE_PREFIX + name: seen for name, seen in feeds}
        levels = s.exec(select(IocClaim.confidence).where(col(IocClaim.decays)).distinct()).all()
        gone: dict[str, list[tuple[Key, str]]] = {}
        for confidence in sorted(levels):
            cutoff = now - model.cutoff_age_ms(confidence)
            stale = s.exec(select(IocClaim.channel, IocClaim.type, IocClaim.value, IocClaim.source).where(
                col(IocClaim.decays), IocClaim.confidence == confidence, col(IocClaim.last_seen_ms) < cutoff))
            for channel, t, v, src in stale:
                if refreshed.get(src, 0) < cutoff:
                    gone.setdefault(channel, []).append(((t, v), src))
        for channel in sorted(gone):  # one lock order for every controller
            lock_channel(s, channel)
        for channel, claims in sorted(gone.items()):
            removed += withdraw(s, channel, claims, now)
    return removed
