"""Enrollment-token cleanup: a token is useless once expired (used or not); it is kept for a grace
period so that a late attempt is told "expired" rather than "unknown", then deleted."""

from __future__ import annotations

from sqlalchemy import delete
from sqlmodel import col

from controller.store.db import Database
from controller.store.models import EnrollmentToken


def delete_expired_tokens(db: Database, expired_before_ms: int) -> int:
    """Delete tokens that expired before `expired_before_ms` (an indexed range); returns how many."""
    with db.session() as s:
        result = s.exec(  # type: ignore[call-overload]
            delete(EnrollmentToken).where(col(EnrollmentToken.expires_at_ms) < expired_before_ms)
        )
        return int(result.rowcount or 0)
