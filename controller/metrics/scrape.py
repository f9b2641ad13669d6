"""Metrics read when Prometheus scrapes, not kept up to date: the fleet from the store (through the
fleet view operators see) and the telemetry consumer's counts and lag. collect() runs in the metrics
server's request thread, so the database read never touches the event loop; the consumer's lag is
a JetStream request and is asked on the loop, with a bound on the wait."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from controller.domain.models import FleetStatus, GatewayStatus
from controller.telemetry.consumer_state import ConsumerStats

log = logging.getLogger("mssp.controller.metrics")

LAG_TIMEOUT = 2.0


class TelemetrySource(Protocol):
    stats: ConsumerStats

    async def lag(self) -> int: ...


class FleetCollector(Collector):
    """Gateways by status, connected (seen within the online window) and converged (desired ==
    applied, nothing refused) among the enrolled."""

    def __init__(self, fleet_status: Callable[[], FleetStatus]) -> None:
        self.fleet_status = fleet_status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            fleet = self.fleet_status()
        except Exception as exc:  # database down: the scrape still answers, without these series
            log.warning("metrics: cannot read the fleet: %s", exc)
            return
        by_status = GaugeMetricFamily("mssp_gateways", "Gateways by status (revoked ones not counted)",
                                      labels=["status"])
        enrolled = [g for g in fleet.gateways if g.status == GatewayStatus.ENROLLED]
        by_status.add_metric(["enrolled"], len(enrolled))
        by_status.add_metric(["pending"], sum(g.status == GatewayStatus.PENDING for g in fleet.gateways))
        yield by_status
        yield GaugeMetricFamily("mssp_gateways_connected",
                                "Enrolled gateways seen within the online window", value=fleet.online)
        converged = sum(g.converged for g in enrolled)
        yield GaugeMetricFamily("mssp_gateways_converged", "Enrolled gateways that applied what is "
                                "desired and refused nothing", value=converged)
        yield GaugeMetricFamily("mssp_gateways_converged_ratio",
                                "Converged among enrolled gateways (1 with none enrolled)",
                                value=converged / len(enrolled) if enrolled else 1.0)


class ConsumerCollector(Collector):
    def __init__(self, consumer: TelemetrySource, loop: asyncio.AbstractEventLoop) -> None:
        self.consumer = consumer
        self.loop = loop

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self.consumer.stats
        for name, doc, value in (
            ("mssp_telemetry_batches", "Telemetry batches ingested (first delivery)", stats.batches),
            ("mssp_telemetry_records", "Telemetry records ingested", stats.records),
            ("mssp_telemetry_duplicates", "Telemetry batches already counted (redeliveries)",
             stats.duplicates),
            ("mssp_telemetry_rejected", "Telemetry batches refused for good (malformed, forged, "
             "out of bounds)", stats.rejected),
            ("mssp_telemetry_retries", "Telemetry batches handed back after a database failure",
             stats.retries),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        lag = self._lag()
        if lag is not None:
            yield GaugeMetricFamily("mssp_telemetry_consumer_lag", "Telemetry batches in the stream "
                                    "not yet acked by the controllers' durable consumer", value=lag)

    def _lag(self) -> int | None:
        if self.loop.is_closed():
            return None
        future = asyncio.run_coroutine_threadsafe(self.consumer.lag(), self.loop)
        try:
            return future.result(timeout=LAG_TIMEOUT)
        except Exception as exc:  # broker away or slow: leave the series out of this scrape
            future.cancel()
            log.debug("metrics: telemetry consumer lag unavailable: %s", exc)
            return None
