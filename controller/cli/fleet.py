"""`msspctl fleet status`: is every gateway enforcing what the controller wants?"""

from __future__ import annotations

import typer
from rich.text import Text

from controller.cli import output
from controller.cli.client import call
from controller.cli.output import Format, Output
from mssp.common.clock import CLOCK_TOLERANCE_MS
from mssp.v1 import operator_pb2

app = typer.Typer(help="Watch fleet health and convergence.", no_args_is_help=True)


def budget_cell(gw: operator_pb2.Gateway) -> Text:
    """How many desired indicators the gateway leaves out for its device budget, of how many it holds."""
    if not gw.left_out_by_budget:
        return Text("0" if gw.ioc_budget else "-")
    return Text(f"{gw.left_out_by_budget} (budget {gw.ioc_budget})", style="yellow")


def converged_cell(gw: operator_pb2.Gateway) -> Text:
    """yes / no; "no (N refused)" when the gateway does not enforce part of what it was sent."""
    if gw.refusals_total and not gw.converged:
        return Text(f"no ({gw.refusals_total} refused)", style="red")
    return output.yes_no(gw.converged)


def cert_cell(gw: operator_pb2.Gateway) -> Text:
    """When its certificate expires; red when the agent should have renewed it and has not."""
    if not gw.cert_not_after_ms:
        return Text("-")
    expiry = output.relative(gw.cert_not_after_ms)
    if gw.cert_not_after_ms <= output.clock_ms():
        return Text(f"expired {expiry}", style="red")
    if gw.renewal_overdue:
        return Text(f"{expiry}, renewal overdue", style="red")
    return Text(expiry)


def clock_text(offset_ms: int) -> str:
    """'3d ahead' / '2h behind' / 'in step' (within 30 s: the agent trusts its own clock then)."""
    if abs(offset_ms) <= CLOCK_TOLERANCE_MS:
        return "in step"
    return f"{output.span(abs(offset_ms) / 1000)} {'ahead' if offset_ms > 0 else 'behind'}"


def refusal_lines(gw: operator_pb2.Gateway) -> list[str]:
    """One line per reported refusal ("ioc 'x': why"), then how many more the gateway counted."""
    lines = [f"{r.kind} {r.value!r}: {r.reason}" for r in gw.refusals]
    if gw.refusals_total > len(gw.refusals):
        lines.append(f"... and {gw.refusals_total - len(gw.refusals)} more")
    return lines


@app.command("status")
def status(
    ctx: typer.Context,
    tenant: str = typer.Option("", "--tenant", "-t", help="only this tenant's gateways"),
    fmt: Output = Format.table,
) -> None:
    """Per gateway: online, desired vs applied versions, converged; then a one-line summary."""
    reply = call(ctx, "FleetStatus", operator_pb2.FleetStatusRequest(tenant=tenant))
    if fmt is Format.json:
        output.print_json(reply)
        return
    t = output.table(
        "tenant", "name", "online", "desired", "applied", "converged", "left out by budget", "last seen",
        "agent version", "certificate expires",
    )
    for gw in reply.gateways:
        output.add_row(
            t, gw.tenant, gw.name, output.yes_no(gw.online), output.versions(gw.desired),
            output.versions(gw.applied), converged_cell(gw), budget_cell(gw),
            output.relative(gw.last_seen_ms), gw.agent_version or "-", cert_cell(gw),
        )
    con = output.console()
    con.print(t)
    con.print(f"{reply.total} gateways, {reply.online} online, {reply.converged} converged")
    overdue = [f"{gw.tenant}/{gw.name}" for gw in reply.gateways if gw.renewal_overdue]
    if overdue:  # a router that cannot renew drops off when its certificate expires
        con.print(f"[red]{len(overdue)} failed to renew their certificate:[/] "
                  f"{output.esc(', '.join(overdue))}")
    skewed = [f"{gw.tenant}/{gw.name} ({clock_text(gw.clock_offset_ms)})" for gw in reply.gateways
              if abs(gw.clock_offset_ms) > CLOCK_TOLERANCE_MS]
    if skewed:  # they enforce by our clock, but their logs and local tools are off
        con.print(f"[yellow]router clocks off:[/] {output.esc(', '.join(skewed))}")
    refused = [gw for gw in reply.gateways if gw.refusals_total]
    if refused:  # why those are not converged: what each does not enforce
        r = output.table("gateway", "not enforced", title="refused by the gateway")
        for gw in refused:
            for line in refusal_lines(gw):
                output.add_row(r, f"{gw.tenant}/{gw.name}", line)
        con.print(r)
    for err in reply.push_errors:  # a push that never went out on NATS: only resyncs carry it
        con.print(f"[yellow]warning:[/] push {output.esc(err.channel)}#{err.seq} "
                  f"({output.relative(err.created_at_ms)}): {output.esc(err.error)}")
