"""Telemetry aggregation: validate and fold gateway batches into rollups exactly once (ingest), the
JetStream consumer feeding it, and the queries behind alerts, top lists and billing usage."""
