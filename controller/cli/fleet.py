"""`msspctl fleet status`: is every gateway enforcing what the controller wants?"""

from __future__ import annotations

import typer

from controller.cli import output
from controller.cli.client import call
from controller.cli.output import Format, Output
from mssp.v1 import operator_pb2

app = typer.Typer(help="Watch fleet health and convergence.", no_args_is_help=True)


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
        "tenant", "name", "online", "desired", "applied", "converged", "last seen", "agent version"
    )
    for gw in reply.gateways:
        output.add_row(
            t, gw.tenant, gw.name, output.yes_no(gw.online), output.versions(gw.desired),
            output.versions(gw.applied), output.yes_no(gw.converged), output.relative(gw.last_seen_ms),
            gw.agent_version or "-",
        )
    con = output.console()
    con.print(t)
    con.print(f"{reply.total} gateways, {reply.online} online, {reply.converged} converged")
