"""`msspctl sighting ...`: what gateways hit, per indicator, and the promotions they lead to."""

from __future__ import annotations

import time

import typer

from controller.cli import output
from controller.cli.args import parse_ttl_seconds
from controller.cli.client import CliError, call
from controller.cli.output import Format, Output
from mssp.v1 import intel_pb2

app = typer.Typer(help="Sightings: indicator hits at gateways, and their promotion to every tenant.",
                  no_args_is_help=True)
INTEL = "IntelService"


@app.command("list")
def list_(
    ctx: typer.Context,
    tenant: str = typer.Option("", "--tenant", "-t", help="only indicators this tenant's gateways saw"),
    since: str = typer.Option("24h", "--since", help="last seen within, e.g. 1h, 24h, 7d ('all': any time)"),
    state: str = typer.Option("", "--state", help="candidate | promoted | dismissed"),
    fmt: Output = Format.table,
) -> None:
    """One line per indicator: its state, who saw it (operator view) and why it waits or was promoted."""
    seconds = 0 if since == "all" else parse_ttl_seconds(since, "--since")
    since_ms = int((time.time() - seconds) * 1000) if seconds else 0
    request = intel_pb2.ListSightingsRequest(tenant=tenant, since_ms=since_ms, state=state)
    sightings = call(ctx, "ListSightings", request, service=INTEL).sightings
    if fmt is Format.json:
        output.print_json(sightings)
        return
    t = output.table("id", "indicator", "state", "tenants", "sharing", "gateways", "hosts", "hits",
                     "last seen", "why")
    for s in sightings:
        output.add_row(t, s.id[:12], s.value, s.state + (f" ({s.scope})" if s.scope else ""), str(s.tenants),
                       str(s.sharing_tenants), str(s.gateways), str(s.hosts), str(s.count),
                       output.relative(s.last_seen_ms), s.reason)
    output.console().print(t)
    output.console().print(f"{len(sightings)} indicator{'s' if len(sightings) != 1 else ''} sighted")


@app.command("show")
def show(ctx: typer.Context, sighting_id: str = typer.Argument(..., help="its id (or a prefix of 6+)"),
         fmt: Output = Format.table) -> None:
    """Where one indicator was seen: tenant, gateway, LAN host, first and last seen."""
    found = _find(ctx, sighting_id)
    if fmt is Format.json:
        output.print_json(found)
        return
    output.console().print(output.details(
        ("id", found.id), ("indicator", found.value), ("state", found.state), ("scope", found.scope or "-"),
        ("decided", f"{found.decided_by} {output.when(found.decided_at_ms)}" if found.decided_by else "-"),
        ("why", found.reason), ("confidence", str(found.confidence)),
    ))
    t = output.table("tenant", "gateway", "host", "via", "hits", "first seen", "last seen")
    for w in found.seen_at:
        output.add_row(t, w.tenant, w.gateway, w.host or "-", w.via, str(w.count),
                       output.when(w.first_seen_ms), output.when(w.last_seen_ms))
    output.console().print(t)


@app.command("promote")
def promote(
    ctx: typer.Context,
    sighting_id: str = typer.Argument(..., help="its id (or a prefix of 6+)"),
    scope: str = typer.Option("", "--scope", "-s", help="alliance (the policy's default) or global"),
    ttl: str = typer.Option("", "--ttl", help="how long it stays, e.g. 7d (default: the policy's)"),
    fmt: Output = Format.table,
) -> None:
    """Promote a candidate now: one anonymous claim, pushed to every gateway of the scope."""
    found = _find(ctx, sighting_id)
    request = intel_pb2.PromoteSightingRequest(id=found.id, scope=scope)
    if ttl:
        request.ttl_seconds, request.has_ttl = parse_ttl_seconds(ttl, "--ttl"), True
    done = call(ctx, "PromoteSighting", request, service=INTEL)
    if fmt is Format.json:
        output.print_json(done)
        return
    output.console().print(f"promoted [bold]{output.esc(done.value)}[/bold] to {output.esc(done.scope)}")


@app.command("dismiss")
def dismiss(ctx: typer.Context, sighting_id: str = typer.Argument(..., help="its id (or a prefix of 6+)"),
            fmt: Output = Format.table) -> None:
    """Never promote this candidate (it stays listed as dismissed)."""
    found = _find(ctx, sighting_id)
    done = call(ctx, "DismissSighting", intel_pb2.SightingRef(id=found.id), service=INTEL)
    if fmt is Format.json:
        output.print_json(done)
        return
    output.console().print(f"dismissed [bold]{output.esc(done.value)}[/bold]: it will not be promoted")


@app.command("false-positive")
def false_positive(
    ctx: typer.Context,
    value: str = typer.Argument(..., help="the indicator (address, CIDR or domain)"),
    tenant: str = typer.Option(..., "--tenant", "-t", help="the tenant that reports it"),
    fmt: Output = Format.table,
) -> None:
    """Report a shared indicator as a false positive for a tenant: its gateways stop enforcing it at once;
    reports from enough organisations withdraw an alliance promotion for everyone."""
    done = call(ctx, "ReportFalsePositive", intel_pb2.FalsePositiveRequest(tenant=tenant, value=value),
                service=INTEL)
    if fmt is Format.json:
        output.print_json(done)
        return
    what = "now exempt" if done.new else "already exempt"
    more = ("; enough organisations reported it: the alliance's promotion is withdrawn" if done.withdrawn
            else "")
    output.console().print(f"{output.esc(done.value)} is {what} for {output.esc(tenant)}{more}")


def _find(ctx: typer.Context, prefix: str) -> intel_pb2.SightingInfo:
    """The sighting whose id is `prefix` or starts with it (6 characters at least), else a clear error."""
    if len(prefix) < 6:
        raise CliError(f"give at least 6 characters of a sighting id, got {prefix!r}")
    everything = call(ctx, "ListSightings", intel_pb2.ListSightingsRequest(), service=INTEL).sightings
    matches = [s for s in everything if s.id.startswith(prefix)]
    if not matches:
        raise CliError(f"unknown sighting {prefix!r} (see `msspctl sighting list --since all`)")
    if len(matches) > 1:
        raise CliError(f"sighting id {prefix!r} is ambiguous: {', '.join(m.id for m in matches[:5])}")
    return matches[0]
