"""`msspctl tenant`: the customers an MSSP serves."""

from __future__ import annotations

import typer

from controller.cli import output
from controller.cli.client import CliError, call
from controller.cli.output import Format, Output
from mssp.v1 import operator_pb2

app = typer.Typer(help="Create, inspect, re-plan and delete tenants.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="tenant name, e.g. acme"),
    plan: str = typer.Option("", "--plan", help="billing plan (server default when omitted)"),
    fmt: Output = Format.table,
) -> None:
    """Create a tenant."""
    tenant = call(ctx, "CreateTenant", operator_pb2.CreateTenantRequest(name=name, plan=plan))
    if fmt is Format.json:
        output.print_json(tenant)
    else:
        output.console().print(
            f"created tenant [bold]{output.esc(tenant.name)}[/bold] (plan {output.esc(tenant.plan or '-')})"
        )


@app.command("list")
def list_(ctx: typer.Context, fmt: Output = Format.table) -> None:
    """List all tenants."""
    tenants = call(ctx, "ListTenants", operator_pb2.ListTenantsRequest()).tenants
    if fmt is Format.json:
        output.print_json(tenants)
        return
    t = output.table("name", "plan", "gateways", "iocs", "policy", "sharing", "created")
    for tenant in tenants:
        output.add_row(
            t, tenant.name, tenant.plan or "-", str(tenant.gateway_count), str(tenant.ioc_count),
            f"v{tenant.policy_version}", _on_off(tenant.sharing), output.relative(tenant.created_at_ms),
        )
    output.console().print(t)
    output.console().print(f"{len(tenants)} tenant{'s' if len(tenants) != 1 else ''}")


@app.command("show")
def show(
    ctx: typer.Context, name: str = typer.Argument(..., help="tenant name"), fmt: Output = Format.table
) -> None:
    """Show one tenant."""
    tenant = call(ctx, "GetTenant", operator_pb2.TenantRef(name=name))
    if fmt is Format.json:
        output.print_json(tenant)
        return
    output.console().print(output.details(
        ("name", tenant.name),
        ("id", tenant.id),
        ("plan", tenant.plan or "-"),
        ("created", output.when(tenant.created_at_ms)),
        ("gateways", str(tenant.gateway_count)),
        ("tenant IOCs", str(tenant.ioc_count)),
        ("policy version", str(tenant.policy_version)),
        ("tenant channel seq", str(tenant.tenant_seq)),
        ("sharing", _on_off(tenant.sharing) + (" (in the alliance)" if tenant.sharing else "")),
    ))


def _on_off(flag: bool) -> str:
    return "on" if flag else "off"


@app.command("set-sharing")
def set_sharing(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="tenant name"),
    setting: str = typer.Argument(..., help="on (join the alliance) or off (leave it)"),
    fmt: Output = Format.table,
) -> None:
    """Opt a tenant in or out of the alliance. In it, its gateways receive the alliance's indicators and
    its sightings count towards promotions (never naming it). Its gateways' broker credentials are
    re-issued, so a tenant that leaves stops receiving alliance pushes at once."""
    if setting not in ("on", "off"):
        raise CliError(f"sharing must be 'on' or 'off', got {setting!r}")
    request = operator_pb2.SetTenantSharingRequest(name=name, sharing=setting == "on")
    tenant = call(ctx, "SetTenantSharing", request)
    if fmt is Format.json:
        output.print_json(tenant)
    else:
        state = "in the alliance" if tenant.sharing else "out of the alliance"
        output.console().print(f"tenant [bold]{output.esc(tenant.name)}[/bold] is {state}")


@app.command("set-plan")
def set_plan(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="tenant name"),
    plan: str = typer.Argument(..., help="billing plan (the names `tenant create --plan` accepts)"),
    fmt: Output = Format.table,
) -> None:
    """Change a tenant's billing plan."""
    tenant = call(ctx, "SetTenantPlan", operator_pb2.SetTenantPlanRequest(name=name, plan=plan))
    if fmt is Format.json:
        output.print_json(tenant)
    else:
        output.console().print(
            f"tenant [bold]{output.esc(tenant.name)}[/bold] is now on plan {output.esc(tenant.plan)}"
        )


@app.command("delete")
def delete(
    ctx: typer.Context, name: str = typer.Argument(..., help="tenant name"), fmt: Output = Format.table
) -> None:
    """Revoke every gateway of a tenant, then delete it. Its data is kept for the retention period and
    its name stays reserved meanwhile. No prompt."""
    reply = call(ctx, "DeleteTenant", operator_pb2.TenantRef(name=name))
    if fmt is Format.json:
        output.print_json(reply)
        return
    n = reply.gateways_revoked
    output.console().print(
        f"deleted tenant [bold]{output.esc(reply.tenant.name)}[/bold] ({n} gateway{'s' if n != 1 else ''} "
        "revoked; its data is kept for the retention period)"
    )
