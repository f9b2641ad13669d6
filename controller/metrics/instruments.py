"""What the controller counts as it works (pushes, publish errors, resyncs), in one registry per
controller: tests run several controllers in one process, so the global default registry is never
used. Components take a `PushMetrics` and default to `NO_METRICS`, so they run unmeasured (and
their constructors stay as they were) wherever no registry is wanted."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Histogram, Info

from controller.metrics.grpc_errors import GrpcErrorCounter
from mssp.common.channels import ALLIANCE_CHANNEL, GLOBAL_CHANNEL
from mssp.common.clock import now_ms

CHANNEL_KINDS = ("global", "alliance", "tenant")
# Commit to publish: milliseconds when the outbox keeps up, minutes after a broker outage.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
PUBLISH_ERRORS = ("broker", "unpublishable")


def channel_kind(channel: str) -> str:
    """global | alliance | tenant: the label, never the tenant id (bounded cardinality)."""
    if channel in (GLOBAL_CHANNEL, ALLIANCE_CHANNEL):
        return channel
    return "tenant"


def package_version() -> str:
    try:
        return metadata.version("mssp-gateway")
    except metadata.PackageNotFoundError:
        return "unknown"


class PushMetrics:
    """The no-op: what a publisher or servicer reports to when nothing measures it."""

    def published(self, pushes: Iterable[tuple[str, int]]) -> None:
        """Pushes the broker took, as (channel, committed at ms)."""

    def publish_failed(self, reason: str, count: int = 1) -> None:
        """`reason`: broker (retried) or unpublishable (left to resyncs)."""

    def resync_served(self, pushes: int) -> None:
        """One Sync answered with `pushes` pushes (0: the gateway was up to date)."""


NO_METRICS = PushMetrics()


class ControllerMetrics(PushMetrics):
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.pushes = Counter("mssp_pushes_published", "Pushes published on NATS, by channel kind",
                              ["channel"], registry=r)
        self.latency = Histogram("mssp_push_publish_latency_seconds",
                                 "From a push's commit to the broker's taking it", ["channel"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("mssp_push_publish_errors",
                              "Outbox publishing failures: broker (retried), unpublishable (resync only)",
                              ["reason"], registry=r)
        self.resyncs = Counter("mssp_resyncs", "Sync calls answered to gateways", registry=r)
        self.resync_pushes = Counter("mssp_resync_pushes", "Pushes sent in Sync answers", registry=r)
        self.grpc_errors = Counter("mssp_grpc_errors", "gRPC calls that ended in an error status",
                                   ["server", "code"], registry=r)
        Info("mssp_build", "The controller's version", registry=r).info({"version": package_version()})
        for kind in CHANNEL_KINDS:  # every series exists from the start: rate() needs no first event
            self.pushes.labels(kind)
            self.latency.labels(kind)
        for reason in PUBLISH_ERRORS:
            self.errors.labels(reason)

    def grpc_interceptor(self, server: str) -> GrpcErrorCounter:
        """Put it first on a server (`server`: api or gateway, the label)."""
        return GrpcErrorCounter(self.grpc_errors, server)

    def published(self, pushes: Iterable[tuple[str, int]]) -> None:
        now = now_ms()
        for channel, committed_ms in pushes:
            kind = channel_kind(channel)
            self.pushes.labels(kind).inc()
            self.latency.labels(kind).observe(max(0, now - committed_ms) / 1000)

    def publish_failed(self, reason: str, count: int = 1) -> None:
        self.errors.labels(reason).inc(count)

    def resync_served(self, pushes: int) -> None:
        self.resyncs.inc()
        self.resync_pushes.inc(pushes)
