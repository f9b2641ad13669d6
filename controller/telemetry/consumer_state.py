"""What the telemetry consumer counts and decides per message, and the thresholds and enrollment
lookups it reads through: kept apart so the consumer module holds only the fetch/process/settle loop."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from controller.telemetry.alerts import Thresholds
from controller.telemetry.bounds import BatchRejected, EnrolledAt, EnrollmentTimes
from controller.telemetry.validate import subject_identity


class Outcome(Enum):
    DONE = "done"  # committed (or already counted): ack
    REJECTED = "rejected"  # never valid: term
    RETRY = "retry"  # transient failure: nak, redelivered later


@dataclass
class ConsumerStats:
    received: int = 0
    batches: int = 0  # folded for the first time
    duplicates: int = 0  # already counted (redelivery, replay, double publish)
    records: int = 0
    rejected: int = 0  # malformed, forged or insane: terminated
    out_of_bounds: int = 0  # of those, period refused: back-dated, future, too long (bounds.py)
    alerts: int = 0
    retries: int = 0  # messages naked after a database failure
    chunks: int = 0
    revoked: int = 0  # published by a gateway after its revocation: acked, not counted
    last_rejection: str = ""
    last_error: str = ""


class CachedThresholds:
    """Upload thresholds change with policies, rarely; ask the store at most every `ttl` seconds per
    tenant instead of once per chunk."""

    def __init__(self, source: Thresholds, ttl: float = 30.0) -> None:
        self.source = source
        self.ttl = ttl
        self._cache: dict[str, tuple[float, list[tuple[str, int]]]] = {}
        self._lock = threading.Lock()

    def __call__(self, tenant_id: str) -> list[tuple[str, int]]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(tenant_id)
            if hit is not None and hit[0] > now:
                return hit[1]
        value = list(self.source(tenant_id))
        with self._lock:
            self._cache[tenant_id] = (now + self.ttl, value)
        return value


def chunk_enrollment(
    enrolled_at: EnrollmentTimes | EnrolledAt | None, subjects: Iterable[str]
) -> EnrolledAt | None:
    """Every gateway's enrollment time for one chunk, read before validation (one query for the
    uncached ones, not one per batch), so that a database fault raises here, where the consumer
    retries the chunk, instead of inside validation."""
    if enrolled_at is None:
        return None
    ids: set[str] = set()
    for subject in subjects:
        with contextlib.suppress(BatchRejected):  # a bad subject: validate_batch rejects it
            ids.add(subject_identity(subject)[1])
    if isinstance(enrolled_at, EnrollmentTimes):
        return enrolled_at.lookup(ids).get
    return {gid: enrolled_at(gid) for gid in ids}.get
