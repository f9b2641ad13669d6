"""`msspctl alerts list`, `msspctl telemetry top`, `msspctl usage`: what the gateways reported.

They call TelemetryService on the same address with the same credential as every other command;
the client below is OperatorClient with the other service's stub.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import typer

from controller.cli import output
from controller.cli.args import parse_ttl_seconds
from controller.cli.client import OperatorClient, Options, Target, resolve_target
from controller.cli.output import Format, Output
from mssp.common.metrics import AlertKind
from mssp.v1 import telemetry_pb2, telemetry_pb2_grpc

alerts_app = typer.Typer(help="Detections from gateway telemetry: IOC hits, upload thresholds.",
                         no_args_is_help=True)
telemetry_app = typer.Typer(help="Traffic figures from gateway telemetry.", no_args_is_help=True)


class By(enum.StrEnum):
    host = "host"
    destination = "destination"
    category = "category"
    ioc = "ioc"


class TelemetryClient(OperatorClient):
    """OperatorClient (address, TLS, token, deadline, error mapping) calling TelemetryService."""

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._stub = telemetry_pb2_grpc.TelemetryServiceStub(self._channel)  # type: ignore[assignment]


def call(ctx: typer.Context, method: str, request: Any) -> Any:
    opts = ctx.find_object(Options) or Options()
    with TelemetryClient(resolve_target(opts)) as client:
        return client.call(method, request)


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


@alerts_app.command("list")
def list_alerts(
    ctx: typer.Context,
    tenant: str = typer.Option("", "--tenant", "-t", help="only this tenant (default: all tenants)"),
    since: str = typer.Option("7d", "--since", help="how far back, e.g. 24h, 7d"),
    kind: AlertKind | None = typer.Option(None, "--kind", help="only this kind of alert"),
    limit: int = typer.Option(100, "--limit", help="at most this many, newest first"),
    fmt: Output = Format.table,
) -> None:
    """IOC hits and upload-threshold crossings, newest first."""
    request = telemetry_pb2.ListAlertsRequest(
        tenant=tenant, since_seconds=parse_ttl_seconds(since, "--since"), limit=limit,
        kind=kind.value if kind else "",
    )
    reply = call(ctx, "ListAlerts", request)
    if fmt is Format.json:
        output.print_json(reply.alerts)
        return
    t = output.table("when", "tenant", "gateway", "kind", "subject", "host", "details")
    for a in reply.alerts:
        output.add_row(
            t, output.iso(a.at_ms), a.tenant or a.tenant_id, a.gateway or a.gateway_id, a.kind, a.subject,
            a.host or "-", _details_text(a.details),
        )
    con = output.console()
    con.print(t)
    con.print(f"{len(reply.alerts)} alert{'s' if len(reply.alerts) != 1 else ''}")


def _details_text(raw: str) -> str:
    try:
        details = json.loads(raw) if raw else {}
    except ValueError:
        return raw
    return " ".join(f"{k}={v}" for k, v in sorted(details.items()))


@telemetry_app.command("top")
def top(
    ctx: typer.Context,
    tenant: str = typer.Option(..., "--tenant", "-t", help="tenant name"),
    by: By = typer.Option(By.host, "--by", help="rank hosts (egress), destinations (DNS), categories, IOCs"),
    since: str = typer.Option("24h", "--since", help="how far back, e.g. 1h, 24h, 7d"),
    limit: int = typer.Option(20, "--limit", help="how many entries"),
    fmt: Output = Format.table,
) -> None:
    """The biggest talkers of one tenant: hosts, destinations, categories or IOCs."""
    request = telemetry_pb2.TopRequest(
        tenant=tenant, by=by.value, since_seconds=parse_ttl_seconds(since, "--since"), limit=limit
    )
    reply = call(ctx, "Top", request)
    if fmt is Format.json:
        output.print_json(reply)
        return
    if by is By.host:
        t = output.table("host", "gateway", "egress", "packets", "new flows")
        for e in reply.entries:
            output.add_row(
                t, e.key, e.gateway or e.gateway_id, human_bytes(e.bytes), str(e.packets), str(e.count)
            )
    elif by is By.destination:
        t = output.table("destination", "queries", "blocked", "hosts")
        for e in reply.entries:
            output.add_row(t, e.key, str(e.count), str(e.blocked), str(e.hosts))
    elif by is By.category:
        t = output.table("category", "bytes", "packets", "hosts")
        for e in reply.entries:
            output.add_row(t, e.key, human_bytes(e.bytes), str(e.packets), str(e.hosts))
    else:
        t = output.table("ioc", "packets", "bytes", "dns blocks", "hosts")
        for e in reply.entries:
            output.add_row(t, e.key, str(e.packets), human_bytes(e.bytes), str(e.count), str(e.hosts))
    con = output.console()
    con.print(t)
    con.print(f"top {len(reply.entries)} by {by.value} since {output.iso(reply.since_ms)}")


def usage(
    ctx: typer.Context,
    tenant: str = typer.Option(..., "--tenant", "-t", help="tenant name"),
    period: str = typer.Option("", "--period", help="billing month YYYY-MM (default: this month, UTC)"),
    fmt: Output = Format.table,
) -> None:
    """Billing usage for one month: gateway-days and egress volume per gateway."""
    reply = call(ctx, "Usage", telemetry_pb2.UsageRequest(tenant=tenant, period=period))
    if fmt is Format.json:
        output.print_json(reply)
        return
    t = output.table("gateway", "days online", "egress", "batches")
    for g in reply.gateways:
        output.add_row(
            t, g.gateway or g.gateway_id, str(g.days_online), human_bytes(g.egress_bytes), str(g.batches)
        )
    con = output.console()
    con.print(t)
    con.print(
        f"{reply.tenant} {reply.period}: {reply.gateway_days} gateway-days, "
        f"{human_bytes(reply.egress_bytes)} egress"
    )
