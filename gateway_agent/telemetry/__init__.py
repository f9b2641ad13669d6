"""Agent telemetry: counter deltas and DNS summaries (collector), an on-disk outbox (spool) and the
JetStream publisher that drains it in order."""
