"""`msspctl operator` and `msspctl audit`: who may operate the controller, and what they changed.

A named operator uses its token through MSSP_OPERATOR_TOKEN or MSSP_OPERATOR_TOKEN_FILE; the data
dir's operator.token stays the bootstrap admin.
"""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.text import Text

from controller.cli import output
from controller.cli.args import parse_ttl_seconds
from controller.cli.client import call
from controller.cli.output import Format, Output
from mssp.v1 import admin_pb2

app = typer.Typer(help="Create, list and revoke operator credentials (roles admin, read-only).",
                  no_args_is_help=True)
audit_app = typer.Typer(help="What was changed, by whom, when: before and after.", no_args_is_help=True)
SERVICE = "AdminService"


def _state(o: admin_pb2.OperatorInfo) -> Text:
    if o.revoked_at_ms:
        return Text(f"revoked {output.relative(o.revoked_at_ms)}", style="red")
    return Text("active", style="green")


@app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="the operator's name, e.g. alice (shown in the audit log)"),
    role: str = typer.Option("read-only", "--role", help="admin (may change anything) or read-only"),
    fmt: Output = Format.table,
) -> None:
    """A new operator credential; its token is printed once (only its hash is kept)."""
    request = admin_pb2.CreateOperatorRequest(name=name, role=role)
    reply = call(ctx, "CreateOperator", request, service=SERVICE)
    if fmt is Format.json:
        output.print_json(reply)
        return
    con = output.console()
    con.print(f"added operator [bold]{output.esc(reply.operator.name)}[/bold] ({reply.operator.role})")
    con.print("[bold]operator token[/bold] (shown once: it cannot be displayed again):")
    con.print(Text(reply.token, style="bold yellow"), soft_wrap=True, crop=False, overflow="ignore")
    con.print("use it with msspctl as:")
    output.plain("  export MSSP_OPERATOR_TOKEN=" + reply.token)


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="also revoked operators"),
    fmt: Output = Format.table,
) -> None:
    """The operators, with the bootstrap admin (the data dir's operator.token) first."""
    found = call(ctx, "ListOperators", admin_pb2.ListOperatorsRequest(include_revoked=all_),
                 service=SERVICE).operators
    if fmt is Format.json:
        output.print_json(found)
        return
    t = output.table("name", "role", "token", "state", "created", "by", "last used")
    for o in found:
        if o.bootstrap:
            output.add_row(t, o.name, o.role, "operator.token", _state(o), "-", "-", "-")
            continue
        output.add_row(t, o.name, o.role, o.prefix + "...", _state(o), output.relative(o.created_at_ms),
                       o.created_by or "-", output.relative(o.last_used_at_ms))
    output.console().print(t)


@app.command("revoke")
def revoke(ctx: typer.Context, name: str = typer.Argument(...), fmt: Output = Format.table) -> None:
    """The operator's token stops working at once."""
    info = call(ctx, "RevokeOperator", admin_pb2.OperatorRef(name=name), service=SERVICE)
    if fmt is Format.json:
        output.print_json(info)
        return
    output.console().print(f"revoked operator [bold]{output.esc(info.name)}[/bold]")


@app.command("whoami")
def whoami(ctx: typer.Context, fmt: Output = Format.table) -> None:
    """The operator this invocation's token belongs to."""
    info = call(ctx, "WhoAmI", admin_pb2.WhoAmIRequest(), service=SERVICE)
    if fmt is Format.json:
        output.print_json(info)
        return
    suffix = " (bootstrap: the data dir's operator.token)" if info.bootstrap else ""
    output.console().print(f"{output.esc(info.name)}: {info.role}{suffix}")


def _event(e: admin_pb2.AuditEvent) -> dict[str, Any]:
    return {"id": e.id, "at_ms": e.at_ms, "at": output.iso(e.at_ms), "operator": e.operator, "role": e.role,
            "action": e.action, "tenant": e.tenant, "target": e.target,
            "request": _loads(e.request_json), "before": _loads(e.before_json), "after": _loads(e.after_json)}


def _loads(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


@audit_app.command("list")
def audit_list(
    ctx: typer.Context,
    tenant: str = typer.Option("", "--tenant", "-t", help="only changes of this tenant"),
    since: str = typer.Option("24h", "--since", help="within, e.g. 1h, 24h, 7d ('all': any time)"),
    operator: str = typer.Option("", "--operator", help="only changes by this operator"),
    action: str = typer.Option("", "--action", help="only this call, e.g. SetPolicy"),
    limit: int = typer.Option(100, "--limit", min=1, max=1000, help="at most this many, newest first"),
    fmt: Output = Format.table,
) -> None:
    """Changes made through the operator API, newest first."""
    seconds = 0 if since == "all" else parse_ttl_seconds(since, "--since")
    since_ms = int((time.time() - seconds) * 1000) if seconds else 0
    request = admin_pb2.ListAuditRequest(tenant=tenant, since_ms=since_ms, operator=operator, action=action,
                                         limit=limit)
    reply = call(ctx, "ListAudit", request, service=SERVICE)
    events = [_event(e) for e in reply.events]
    if fmt is Format.json:
        output.print_json({"events": events, "truncated": reply.truncated})
        return
    t = output.table("when", "operator", "action", "tenant", "target")
    for e in reply.events:
        output.add_row(t, output.relative(e.at_ms), e.operator, e.action, e.tenant or "-", e.target or "-")
    con = output.console()
    con.print(t)
    if reply.truncated:
        con.print(f"(the newest {limit} shown; narrow with --since, --tenant or raise --limit)")
