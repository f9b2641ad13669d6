"""`msspctl ioc`: indicators of compromise, MSSP-wide (global) or for one tenant."""

from __future__ import annotations

import typer

from controller.cli import output
from controller.cli.args import parse_ttl_seconds
from controller.cli.client import call
from controller.cli.output import Format, Output
from mssp.v1 import common_pb2, operator_pb2

app = typer.Typer(help="Add, remove and list IOCs.", no_args_is_help=True)

SCOPE_HELP = ("'global' (every gateway of every tenant), 'alliance' (the gateways of the tenants that "
              "share) or 'tenant:NAME'")


@app.command("add")
def add(
    ctx: typer.Context,
    value: str = typer.Argument(..., help="IPv4/IPv6 address or CIDR, or a domain"),
    scope: str = typer.Option("global", "--scope", "-s", help=SCOPE_HELP),
    ttl: str | None = typer.Option(
        None, "--ttl", help="expire after e.g. 24h, 7d, or 'never' (default: never; a refresh keeps it)"
    ),
    source: str = typer.Option(
        "", "--source", help="where the indicator came from, e.g. a feed name (a refresh keeps it)"
    ),
    confidence: int | None = typer.Option(None, "--confidence", min=0, max=100, help="0-100"),
    fmt: Output = Format.table,
) -> None:
    """Add (or refresh) an IOC; gateways in scope block it within seconds. A refresh changes only
    the fields given."""
    request = operator_pb2.AddIocRequest(
        value=value, scope=scope, source=source, has_ttl=ttl is not None,
        ttl_seconds=0 if ttl is not None and ttl.strip() == "never" else parse_ttl_seconds(ttl, "--ttl"),
    )
    if confidence is not None:
        request.confidence = confidence
        request.has_confidence = True
    info = call(ctx, "AddIoc", request)
    if fmt is Format.json:
        output.print_json(info)
        return
    expires = output.when(info.ioc.expires_at_ms, never="never expires")
    verb = "refreshed" if info.refreshed else "added"
    output.console().print(
        f"{verb} {_type(info.ioc)} [bold]{output.esc(info.ioc.value)}[/bold] to {output.esc(info.scope)} "
        f"(seq {info.seq}, confidence {info.ioc.confidence}, expires {output.esc(expires)})"
    )


@app.command("remove")
def remove(
    ctx: typer.Context,
    value: str = typer.Argument(..., help="the indicator to remove"),
    scope: str = typer.Option("global", "--scope", "-s", help=SCOPE_HELP),
    fmt: Output = Format.table,
) -> None:
    """Remove an IOC from a scope. Removing one that is not there is not an error (scripts retry)."""
    reply = call(ctx, "RemoveIoc", operator_pb2.RemoveIocRequest(value=value, scope=scope))
    if fmt is Format.json:
        output.print_json(reply)
    elif reply.removed:
        output.console().print(f"removed {output.esc(value)} from {output.esc(scope)} (seq {reply.seq})")
    elif reply.held_in:
        held = ", ".join(reply.held_in)
        output.console().print(
            f"{output.esc(value)} is not in {output.esc(scope)}; held in {output.esc(held)}; nothing changed"
        )
    else:
        output.console().print(f"{output.esc(value)} was not in {output.esc(scope)}; nothing changed")


@app.command("list")
def list_(
    ctx: typer.Context,
    scope: str = typer.Option("", "--scope", "-s", help=SCOPE_HELP + " (default: all scopes)"),
    fmt: Output = Format.table,
) -> None:
    """List IOCs, of all scopes or one."""
    iocs = call(ctx, "ListIocs", operator_pb2.ListIocsRequest(scope=scope)).iocs
    if fmt is Format.json:
        output.print_json(iocs)
        return
    t = output.table("value", "type", "scope", "confidence", "source", "claims", "expires", "added", "seq")
    for info in iocs:
        output.add_row(
            t, info.ioc.value, _type(info.ioc), info.scope, str(info.ioc.confidence), info.ioc.source or "-",
            ", ".join(info.sources) or "-", output.relative(info.ioc.expires_at_ms),
            output.relative(info.created_at_ms), str(info.seq),
        )
    con = output.console()
    con.print(t)
    con.print(f"{len(iocs)} IOC{'s' if len(iocs) != 1 else ''}")


def _type(ioc: common_pb2.Ioc) -> str:
    return output.enum_name(common_pb2.IocType, ioc.type, "IOC_TYPE_")
