"""`msspctl gateway`: a tenant's routers, from one-time enrollment token to revocation."""

from __future__ import annotations

import time

import typer
from rich.text import Text

from controller.cli import output
from controller.cli.args import parse_gateway_ref, parse_ttl_seconds
from controller.cli.client import CliError, OperatorClient, Options, call, controller_address, resolve_target
from controller.cli.fleet import budget_cell, cert_cell, clock_text, converged_cell, refusal_lines
from controller.cli.output import Format, Output
from mssp.v1 import operator_pb2

app = typer.Typer(help="Add, inspect, re-token, revoke and delete gateways.", no_args_is_help=True)

REF_HELP = "TENANT/NAME, e.g. acme/branch-1"


@app.command("add")
def add(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="TENANT/NAME", help=REF_HELP + " (name unique within the tenant)"),
    legacy_name: str | None = typer.Argument(None, hidden=True),  # the older `gateway add TENANT NAME`
    token_ttl: str | None = typer.Option(
        None, "--token-ttl", help="enrollment token lifetime, e.g. 30m, 24h, 7d (server default 24h)"
    ),
    fmt: Output = Format.table,
) -> None:
    """Register a gateway and print its one-time enrollment token."""
    tenant, name = (ref, legacy_name) if legacy_name is not None else parse_gateway_ref(ref)
    ttl = parse_ttl_seconds(token_ttl, "--token-ttl")
    reply = call(ctx, "AddGateway", operator_pb2.AddGatewayRequest(
        tenant=tenant, name=name, token_ttl_seconds=ttl,
    ))
    if fmt is Format.json:
        output.print_json(reply)
        return
    gw = reply.gateway
    output.console().print(f"added gateway [bold]{output.esc(gw.tenant)}/{output.esc(gw.name)}[/bold] "
                           f"(status {gw.status})")
    print_enrollment_token(ctx, reply.enrollment_token, reply.token_expires_at_ms)


def print_enrollment_token(ctx: typer.Context, token: str, expires_at_ms: int) -> None:
    """The token on a line of its own and in the enroll command, never wrapped, cropped or boxed,
    whatever the terminal width: a secret cut by a border or a fold is useless once pasted."""
    address = controller_address(ctx)
    con = output.console()
    con.print("[bold]one-time enrollment token[/bold] (shown once: it cannot be displayed again):")
    con.print(Text(token, style="bold yellow"), soft_wrap=True, crop=False, overflow="ignore")
    con.print(f"expires: {output.when(expires_at_ms)}")
    con.print("on the router, run:")
    output.plain(f"  mssp-agent enroll --controller {address} --token {token} "
                 "--state-dir /var/lib/mssp-agent")


@app.command("list")
def list_(
    ctx: typer.Context,
    tenant: str = typer.Option("", "--tenant", "-t", help="only this tenant's gateways"),
    fmt: Output = Format.table,
) -> None:
    """List gateways, of all tenants or one."""
    gateways = call(ctx, "ListGateways", operator_pb2.ListGatewaysRequest(tenant=tenant)).gateways
    if fmt is Format.json:
        output.print_json(gateways)
        return
    t = output.table("tenant", "name", "status", "online", "desired", "applied", "converged", "last seen")
    for gw in gateways:
        output.add_row(
            t, gw.tenant, gw.name, gw.status, output.yes_no(gw.online), output.versions(gw.desired),
            output.versions(gw.applied), output.yes_no(gw.converged), output.relative(gw.last_seen_ms),
        )
    con = output.console()
    con.print(t)
    con.print(f"{len(gateways)} gateway{'s' if len(gateways) != 1 else ''}")


@app.command("show")
def show(
    ctx: typer.Context, ref: str = typer.Argument(..., metavar="TENANT/NAME", help=REF_HELP),
    fmt: Output = Format.table,
) -> None:
    """Show one gateway in detail."""
    tenant, name = parse_gateway_ref(ref)
    gw = call(ctx, "GetGateway", operator_pb2.GatewayRef(tenant=tenant, name=name))
    if fmt is Format.json:
        output.print_json(gw)
    else:
        output.console().print(gateway_details(gw))


@app.command("revoke")
def revoke(
    ctx: typer.Context, ref: str = typer.Argument(..., metavar="TENANT/NAME", help=REF_HELP),
    fmt: Output = Format.table,
) -> None:
    """Revoke a gateway: its certificate and broker credentials stop working at once. No prompt."""
    tenant, name = parse_gateway_ref(ref)
    gw = call(ctx, "RevokeGateway", operator_pb2.GatewayRef(tenant=tenant, name=name))
    if fmt is Format.json:
        output.print_json(gw)
    else:
        output.console().print(
            f"revoked gateway {output.esc(gw.tenant)}/{output.esc(gw.name)} (status {gw.status})"
        )


@app.command("token")
def token(
    ctx: typer.Context, ref: str = typer.Argument(..., metavar="TENANT/NAME", help=REF_HELP),
    token_ttl: str | None = typer.Option(
        None, "--token-ttl", help="enrollment token lifetime, e.g. 30m, 24h, 7d (server default 24h)"
    ),
    fmt: Output = Format.table,
) -> None:
    """A new one-time enrollment token: for a pending gateway (its older tokens stop working), or
    for a revoked or lost router a re-enrollment as a new identity (the old certificate stays revoked)."""
    tenant, name = parse_gateway_ref(ref)
    ttl = parse_ttl_seconds(token_ttl, "--token-ttl")
    reply = call(ctx, "IssueGatewayToken", operator_pb2.IssueGatewayTokenRequest(
        tenant=tenant, name=name, token_ttl_seconds=ttl,
    ))
    if fmt is Format.json:
        output.print_json(reply)
        return
    gw = reply.gateway
    shown = f"{output.esc(gw.tenant)}/{output.esc(gw.name)}"
    what = ("re-enrollment as a new identity (the old certificate stays revoked)" if reply.new_identity
            else "older unused tokens no longer work")
    output.console().print(f"new token for gateway [bold]{shown}[/bold] (status {gw.status}): {what}")
    print_enrollment_token(ctx, reply.enrollment_token, reply.token_expires_at_ms)


@app.command("delete")
def delete(
    ctx: typer.Context, ref: str = typer.Argument(..., metavar="TENANT/NAME", help=REF_HELP),
    fmt: Output = Format.table,
) -> None:
    """Revoke a gateway and remove it from the controller. The router keeps enforcing its last state
    and reports itself revoked; removing the agent from the router is done on the router. No prompt."""
    tenant, name = parse_gateway_ref(ref)
    gw = call(ctx, "DeleteGateway", operator_pb2.GatewayRef(tenant=tenant, name=name))
    if fmt is Format.json:
        output.print_json(gw)
    else:
        output.console().print(
            f"deleted gateway {output.esc(gw.tenant)}/{output.esc(gw.name)} (revoked; its certificate "
            "stays refused)"
        )


@app.command("wait")
def wait(
    ctx: typer.Context, ref: str = typer.Argument(..., metavar="TENANT/NAME", help=REF_HELP),
    agent_version: str = typer.Option("", "--agent-version", help="also wait until it runs this version"),
    timeout: float = typer.Option(120.0, "--timeout", min=0.0, help="seconds to wait at most"),
    interval: float = typer.Option(1.0, "--interval", min=0.05, help="seconds between polls"),
    fmt: Output = Format.table,
) -> None:
    """Wait until the gateway is enrolled, online and converged (and on --agent-version): what
    provisioning and upgrades wait for. Exit 1 naming what was missing when --timeout passes;
    a revoked gateway fails at once."""
    tenant, name = parse_gateway_ref(ref)
    started = time.monotonic()
    deadline = started + timeout
    opts = ctx.find_object(Options) or Options()
    with OperatorClient(resolve_target(opts)) as client:  # one channel for every poll
        while True:
            gw = client.call("GetGateway", operator_pb2.GatewayRef(tenant=tenant, name=name))
            if gw.status == "revoked":
                raise CliError(f"{tenant}/{name} is revoked (re-enroll it with `msspctl gateway token "
                               f"{tenant}/{name}` and provision it again)")
            missing = missing_for_ready(gw, agent_version)
            if not missing:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                first, details = missing[0][0], "; ".join(detail for _, detail in missing)
                raise CliError(f"{tenant}/{name} {first} after {timeout:g} s: {details}")
            time.sleep(min(interval, left))
    if fmt is Format.json:
        output.print_json(gw)
        return
    output.console().print(
        f"{output.esc(gw.tenant)}/{output.esc(gw.name)} enrolled, online, converged at "
        f"{output.versions(gw.applied)}, agent {output.esc(gw.agent_version or '?')} "
        f"(after {time.monotonic() - started:.0f} s)"
    )


def missing_for_ready(gw: operator_pb2.Gateway, agent_version: str) -> list[tuple[str, str]]:
    """(headline, detail) of each thing `gateway wait` still waits for, in the order they happen."""
    missing: list[tuple[str, str]] = []
    if gw.status != "enrolled":
        missing.append(("not enrolled", f"status {gw.status or 'unknown'}"))
    if not gw.online:
        missing.append(("not online", f"last seen {output.relative(gw.last_seen_ms)}"))
    if not gw.converged:
        refused = f", {gw.refusals_total} refused" if gw.refusals_total else ""
        missing.append(("not converged", f"applied {output.versions(gw.applied)}, desired "
                        f"{output.versions(gw.desired)}{refused}"))
    if agent_version and gw.agent_version != agent_version:
        missing.append((f"not on agent version {agent_version}",
                        f"agent version {gw.agent_version or 'unknown'}, wanted {agent_version}"))
    return missing


def gateway_details(gw: operator_pb2.Gateway) -> object:
    return output.details(
        ("gateway", f"{gw.tenant}/{gw.name}"),
        ("id", gw.id),
        ("status", gw.status),
        ("online", output.yes_no(gw.online)),
        ("converged", converged_cell(gw)),
        ("desired", output.versions(gw.desired)),
        ("applied", output.versions(gw.applied)),
        ("created", output.when(gw.created_at_ms)),
        ("enrolled", output.when(gw.enrolled_at_ms, never="not yet")),
        ("last seen", output.when(gw.last_seen_ms)),
        ("agent version", gw.agent_version or "-"),
        ("backend", gw.backend or "-"),
        ("cert serial", gw.cert_serial or "-"),
        ("cert expires", cert_cell(gw)),
        ("cert renewed", output.when(gw.cert_renewed_at_ms)),
        ("router clock", clock_text(gw.clock_offset_ms)),
        ("left out by budget", budget_cell(gw)),
        ("last error", gw.last_error or "-"),
        *(("refused" if i == 0 else "", line) for i, line in enumerate(refusal_lines(gw))),
    )
