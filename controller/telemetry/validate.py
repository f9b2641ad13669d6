"""Validation of incoming telemetry batches (pure: no database).

Strict because the payload comes from routers: the identity in the batch must be the one the broker
authenticated (the subject), so the idempotency key (gateway_id, batch_seq) is the broker's gateway,
never a claim; the period must be possible (bounds.py) and values sane before they reach a bill;
text is made inert (escaped terminal controls) before it is stored.
"""

from __future__ import annotations

import math
import re

from google.protobuf.message import DecodeError

from controller.telemetry.bounds import BatchRejected, EnrolledAt, check_enrollment, check_period
from controller.telemetry.models import DIMENSION_LEN
from mssp.common.channels import TELEMETRY_PREFIX
from mssp.common.clock import now_ms as clock_ms
from mssp.common.text import clean_line
from mssp.v1 import telemetry_pb2

MAX_BATCH_BYTES = 1024 * 1024  # the broker's max_payload
MAX_RECORDS = 10_000
MAX_VALUE = 10**15  # per record and counter: a petabyte in 30 s is a bug or an attack

_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_METRIC_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_known_metrics: set[str] = set()


def subject_identity(subject: str) -> tuple[str, str]:
    """(tenant_id, gateway_id) the broker vouches for: mssp.telemetry.<tenant>.<gateway>.<...>."""
    parts = subject.split(".")
    if len(parts) < 5 or f"{parts[0]}.{parts[1]}" != TELEMETRY_PREFIX:
        raise BatchRejected(f"not a telemetry subject: {subject[:200]!r}")
    return parts[2], parts[3]


def _metric_ok(metric: str) -> bool:
    if metric in _known_metrics:
        return True
    if not _METRIC_RE.fullmatch(metric):
        return False
    if len(_known_metrics) < 1000:  # a cache, bounded against a flood of invented names
        _known_metrics.add(metric)
    return True


def validate_batch(
    subject: str, data: bytes, now_ms: int | None = None, *, enrolled_at: EnrolledAt | None = None
) -> telemetry_pb2.TelemetryBatch:
    """Parse and check one message; BatchRejected says why in one line (PeriodRefused: bounds.py)."""
    now = clock_ms() if now_ms is None else now_ms
    tenant_id, gateway_id = subject_identity(subject)
    if len(data) > MAX_BATCH_BYTES:
        raise BatchRejected(f"batch of {len(data)} bytes exceeds {MAX_BATCH_BYTES}")
    batch = telemetry_pb2.TelemetryBatch()
    try:
        batch.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise BatchRejected(f"not a TelemetryBatch: {exc}") from None
    if batch.tenant_id != tenant_id or batch.gateway_id != gateway_id:
        raise BatchRejected(
            f"batch claims {batch.tenant_id[:64]!r}/{batch.gateway_id[:64]!r} "
            f"but was published as {tenant_id[:64]!r}/{gateway_id[:64]!r}"
        )
    if not _ID_RE.fullmatch(tenant_id) or not _ID_RE.fullmatch(gateway_id):
        raise BatchRejected("tenant or gateway id is not a valid id")
    if batch.batch_seq < 1 or batch.batch_seq >= 2**63:
        raise BatchRejected(f"batch_seq {batch.batch_seq} out of range")
    enrolled = None
    if enrolled_at is not None:
        check_enrollment(gateway_id, enrolled := enrolled_at(gateway_id))
    check_period(batch.period_start_ms, batch.period_end_ms, now, enrolled)
    if len(batch.records) > MAX_RECORDS:
        raise BatchRejected(f"{len(batch.records)} records exceed {MAX_RECORDS}")
    known = _known_metrics
    for r in batch.records:
        metric, dim, p, b, c = r.metric, r.dimension, r.packets, r.bytes, r.count
        if metric not in known and not _metric_ok(metric):
            raise BatchRejected(f"bad metric name {metric[:40]!r}")
        if p < 0 or b < 0 or c < 0:
            raise BatchRejected(f"negative value in {metric}")
        if p > MAX_VALUE or b > MAX_VALUE or c > MAX_VALUE:
            raise BatchRejected(f"absurd value in {metric} (> {MAX_VALUE})")
        if len(dim) > DIMENSION_LEN:
            raise BatchRejected(f"bad dimension in {metric}")
        if not dim.isprintable():  # NUL (the fold's separator) and terminal controls: escaped
            r.dimension = clean_line(dim, DIMENSION_LEN)
    h = batch.health
    gauges = (h.rss_bytes, h.apply_errors, h.spool_drops, h.spool_depth)
    if min(gauges) < 0 or max(gauges) > MAX_VALUE:
        raise BatchRejected("agent health value out of range")
    if not (math.isfinite(h.cpu_seconds) and 0 <= h.cpu_seconds <= MAX_VALUE):
        raise BatchRejected("agent cpu_seconds out of range")
    if len(h.agent_version) > 64:
        raise BatchRejected("agent_version too long")
    if not h.agent_version.isprintable():
        h.agent_version = clean_line(h.agent_version, 64)
    return batch
