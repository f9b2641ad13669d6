"""Telemetry batches as an agent makes them, and what a set of them sums to (controller-side tests)."""

from __future__ import annotations

import time

from gateway_agent.telemetry.publisher import batch_subject
from mssp.common.metrics import CATEGORY_BYTES, DNS_QUERIES, HOST_EGRESS
from mssp.v1 import telemetry_pb2

TA, TB = "tenantA", "tenantB"
NOW = int(time.time() * 1000)
Totals = dict[tuple[str, str, str], tuple[int, int, int]]


def make_batch(
    gateway: str = "gw1",
    seq: int = 1,
    records: list[tuple[str, str, int, int, int]] | None = None,
    *,
    tenant: str = TA,
    end_ms: int | None = None,
    period_s: int = 30,
) -> telemetry_pb2.TelemetryBatch:
    end = NOW if end_ms is None else end_ms
    batch = telemetry_pb2.TelemetryBatch(
        gateway_id=gateway, tenant_id=tenant, batch_seq=seq,
        period_start_ms=end - period_s * 1000, period_end_ms=end,
    )
    batch.health.rss_bytes = 20_000_000
    batch.health.applied.tenant_seq = seq
    for metric, dim, packets, nbytes, count in records if records is not None else default_records(seq):
        batch.records.add(metric=metric, dimension=dim, packets=packets, bytes=nbytes, count=count)
    return batch


def default_records(seq: int) -> list[tuple[str, str, int, int, int]]:
    return [
        (HOST_EGRESS, "192.0.2.10", seq, 1000 * seq, 0),
        (HOST_EGRESS, "192.0.2.11", 1, 10, 0),
        (CATEGORY_BYTES, f"cloud-storage|192.0.2.{10 + seq % 3}", 2, 200 + seq, 0),
        (DNS_QUERIES, "files.storage.test|192.0.2.10", 0, 0, 3),
    ]


def expected(batches: list[telemetry_pb2.TelemetryBatch]) -> Totals:
    """What the agents measured: the sum of every distinct batch."""
    out: Totals = {}
    seen: set[tuple[str, int]] = set()
    for b in batches:
        if (b.gateway_id, b.batch_seq) in seen:
            continue
        seen.add((b.gateway_id, b.batch_seq))
        for r in b.records:
            key = (b.gateway_id, r.metric, r.dimension)
            p, n, c = out.get(key, (0, 0, 0))
            out[key] = (p + r.packets, n + r.bytes, c + r.count)
    return out


def subject_of(batch: telemetry_pb2.TelemetryBatch) -> str:
    return batch_subject(batch.tenant_id, batch.gateway_id)
