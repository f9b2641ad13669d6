"""Housekeeping of decayed claims (domain/decay.py): each one whose score fell below the threshold
is withdrawn, and its indicator goes with its last claim, pushed like an expiry.

A feed's claims count as seen at the feed's last successful run: a refresh re-states them all
without rewriting a million rows.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from controller.domain.decay import DecayModel
from controller.domain.ioc_meta import FEED_SOURCE_PREFIX
from controller.services.channels import lock_channel
from controller.services.claims import Key, withdraw
from controller.store.db import Database
from controller.store.intel_models import Feed, IocClaim
from mssp.common.clock import now_ms


def refreshed_at(s: Session) -> dict[str, int]:
    """source -> last successful run, for the feeds whose every run re-states all their claims (url
    and path feeds). A TAXII feed pulls only what was added: its claims age from their own last-seen."""
    feeds = s.exec(select(Feed.name, Feed.last_success_ms).where(Feed.kind != "taxii"))
    return {FEED_SOURCE_PREFIX + name: seen for name, seen in feeds}


def decay_claims(db: Database, model: DecayModel, now: int | None = None) -> int:
    """Withdraw decayed claims; returns indicators removed."""
    now = now_ms() if now is None else now
    removed = 0
    with db.session() as s:
        levels = s.exec(select(IocClaim.confidence).where(col(IocClaim.decays)).distinct()).all()
        cutoffs = {confidence: now - model.cutoff_age_ms(confidence) for confidence in levels}
        channels = sorted(set(ch for ch, _ in _stale(s, cutoffs, refreshed_at(s))))
        for channel in channels:  # one lock order for every controller
            lock_channel(s, channel)
        # Read again under the locks: a claim re-stated meanwhile is not withdrawn.
        gone: dict[str, list[tuple[Key, str]]] = {}
        for channel, claim in _stale(s, cutoffs, refreshed_at(s), channels):
            gone.setdefault(channel, []).append(claim)
        for channel, claims in sorted(gone.items()):
            removed += withdraw(s, channel, claims, now)
    return removed


def _stale(s: Session, cutoffs: dict[int, int], refreshed: dict[str, int], channels: list[str] | None = None,
           ) -> list[tuple[str, tuple[Key, str]]]:
    found = []
    for confidence, cutoff in sorted(cutoffs.items()):
        query = select(IocClaim.channel, IocClaim.type, IocClaim.value, IocClaim.source).where(
            col(IocClaim.decays), IocClaim.confidence == confidence, col(IocClaim.last_seen_ms) < cutoff)
        if channels is not None:
            query = query.where(col(IocClaim.channel).in_(channels))
        found += [(channel, ((t, v), src)) for channel, t, v, src in s.exec(query)
                  if refreshed.get(src, 0) < cutoff]
    return found
