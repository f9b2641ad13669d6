"""`msspctl apikey` and `msspctl partner`: keys of the tenant API. A key is printed once, when it is
created or rotated: the controller keeps only its hash."""

from __future__ import annotations

import re

import typer
from rich.text import Text

from controller.cli import output
from controller.cli.args import parse_ttl_seconds
from controller.cli.client import CliError, call
from controller.cli.output import Format, Output
from mssp.v1 import accounts_pb2

SERVICE = "ApiKeyService"
DEFAULT_OVERLAP = "24h"
_ZERO = re.compile(r"0+[smhdw]?")

app = typer.Typer(help="Create, list, revoke and rotate tenant API keys.", no_args_is_help=True)
partner_app = typer.Typer(help="Keys for partners (other MSSPs, CERTs): scope taxii:read.",
                          no_args_is_help=True)


def _scopes(raw: str | None) -> list[str]:
    if raw is None:
        return []
    scopes = [s.strip() for s in raw.split(",") if s.strip()]
    if not scopes:
        raise CliError("--scope: give one or more scopes separated by commas, e.g. usage:read,reports:read")
    return scopes


def _overlap_seconds(raw: str) -> int:
    """Like --expires, but 0 is allowed: the old key stops working at once."""
    if _ZERO.fullmatch(raw.strip()):
        return 0
    return parse_ttl_seconds(raw, "--overlap")


def _state(key: accounts_pb2.ApiKey) -> Text:
    style = {"active": "green", "expired": "yellow", "revoked": "red"}.get(key.state, "")
    label = key.state + (" (rotated)" if key.replaced_by else "")
    return Text(label, style=style)


def _expires(ms: int) -> str:
    return output.relative(ms, never="never")


def _print_created(created: accounts_pb2.CreatedApiKey | accounts_pb2.RotatedApiKey, verb: str) -> None:
    key = created.api_key
    who = f"tenant {output.esc(key.tenant)}" if key.kind == "tenant" else f"partner {output.esc(key.name)}"
    console = output.console()
    scopes, expires = output.esc(",".join(key.scopes)), output.esc(_expires(key.expires_at_ms))
    console.print(f"{verb} API key [bold]{output.esc(key.id)}[/bold] for {who} "
                  f"(scopes {scopes}; expires {expires})")
    console.print("the key is shown once; store it now (only its hash is kept):")
    output.plain(created.key)


@app.command("create")
def create(
    ctx: typer.Context,
    tenant: str = typer.Argument(..., help="tenant name"),
    scope: str | None = typer.Option(
        None, "--scope", help="comma-separated scopes (default gateways:read,usage:read,reports:read; also "
        "indicators:read, indicators:write)"),
    expires: str | None = typer.Option(None, "--expires", help="lifetime, e.g. 90d (default: never expires)"),
    name: str = typer.Option("", "--name", help="a label, e.g. the BI system using the key"),
    fmt: Output = Format.table,
) -> None:
    """Create a tenant API key and print it once."""
    request = accounts_pb2.CreateApiKeyRequest(
        tenant=tenant, scopes=_scopes(scope), expires_seconds=parse_ttl_seconds(expires, "--expires"),
        name=name,
    )
    created = call(ctx, "CreateApiKey", request, service=SERVICE)
    if fmt is Format.json:
        output.print_json(created)
    else:
        _print_created(created, "created")


@app.command("list")
def list_(
    ctx: typer.Context,
    tenant: str = typer.Option("", "--tenant", help="only this tenant's keys (default: every key)"),
    fmt: Output = Format.table,
) -> None:
    """List API keys (never the keys themselves: their prefixes)."""
    keys = call(ctx, "ListApiKeys", accounts_pb2.ListApiKeysRequest(tenant=tenant), service=SERVICE).api_keys
    if fmt is Format.json:
        output.print_json(keys)
        return
    t = output.table("id", "kind", "tenant", "name", "prefix", "scopes", "state", "expires", "last used")
    for key in keys:
        output.add_row(
            t, key.id, key.kind, key.tenant or "-", key.name or "-", key.prefix + "...", ",".join(key.scopes),
            _state(key), _expires(key.expires_at_ms), output.relative(key.last_used_at_ms),
        )
    output.console().print(t)
    output.console().print(f"{len(keys)} key{'s' if len(keys) != 1 else ''}")


@app.command("revoke")
def revoke(
    ctx: typer.Context, key_id: str = typer.Argument(..., help="key id (see `apikey list`)"),
    fmt: Output = Format.table,
) -> None:
    """Revoke a key now. No prompt."""
    key = call(ctx, "RevokeApiKey", accounts_pb2.ApiKeyRef(id=key_id), service=SERVICE)
    if fmt is Format.json:
        output.print_json(key)
    else:
        output.console().print(
            f"revoked API key [bold]{output.esc(key.id)}[/bold] ({output.esc(key.prefix)}...)")


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    key_id: str = typer.Argument(..., help="key id (see `apikey list`)"),
    overlap: str = typer.Option(DEFAULT_OVERLAP, "--overlap",
                                help="how long the old key keeps working, e.g. 24h (0: stop it now)"),
    fmt: Output = Format.table,
) -> None:
    """Replace a key by a new one with the same tenant, scopes and name; print the new key once."""
    request = accounts_pb2.RotateApiKeyRequest(id=key_id, overlap_seconds=_overlap_seconds(overlap))
    rotated = call(ctx, "RotateApiKey", request, service=SERVICE)
    if fmt is Format.json:
        output.print_json(rotated)
        return
    _print_created(rotated, "rotated into")
    output.console().print(f"the old key {output.esc(rotated.previous.prefix)}... works until "
                           f"{output.esc(output.when(rotated.previous.expires_at_ms))}")


@partner_app.command("create")
def partner_create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="partner name, e.g. cert-eu"),
    expires: str | None = typer.Option(None, "--expires",
                                       help="lifetime, e.g. 365d (default: never expires)"),
    fmt: Output = Format.table,
) -> None:
    """Create a partner key (scope taxii:read, bound to no tenant) and print it once."""
    ttl = parse_ttl_seconds(expires, "--expires")
    request = accounts_pb2.CreatePartnerRequest(name=name, expires_seconds=ttl)
    created = call(ctx, "CreatePartner", request, service=SERVICE)
    if fmt is Format.json:
        output.print_json(created)
    else:
        _print_created(created, "created")
