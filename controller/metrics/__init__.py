"""Prometheus metrics of one controller: counted as it works (instruments), read at scrape time
(scrape), served on their own port (listener)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from controller.domain.errors import ListenError
from controller.domain.models import FleetStatus
from controller.metrics.instruments import NO_METRICS, ControllerMetrics, PushMetrics, channel_kind
from controller.metrics.listener import MetricsServer, plan_metrics_listen, start_metrics
from controller.metrics.scrape import ConsumerCollector, FleetCollector, TelemetrySource

__all__ = ["NO_METRICS", "ControllerMetrics", "MetricsServer", "PushMetrics", "channel_kind",
           "serve_metrics"]


async def serve_metrics(
    listen_address: str, metrics: ControllerMetrics, fleet_status: Callable[[], FleetStatus],
    telemetry: TelemetrySource | None, listen: Any,
) -> MetricsServer | None:
    """The endpoint from `metrics_listen` (None when off), on the port kept in `listen` (ListenState,
    name "metrics") when configured with port 0, so a scrape configuration keeps working."""
    plan = plan_metrics_listen(listen_address)
    if plan is None:
        return None
    host, port = plan
    metrics.registry.register(FleetCollector(fleet_status))
    if telemetry is not None:
        metrics.registry.register(ConsumerCollector(telemetry, asyncio.get_running_loop()))
    try:
        server = await start_metrics(metrics.registry, host, listen.port("metrics", port))
    except ListenError as exc:
        raise ListenError(f"{exc}{listen.what('metrics', '')}") from None
    listen.record("metrics", server.port)
    return server
