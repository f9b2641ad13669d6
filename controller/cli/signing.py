"""`msspctl signing-key`: the keys that sign every push, and their rotation."""

from __future__ import annotations

import typer

from controller.cli import output
from controller.cli.args import parse_ttl_seconds
from controller.cli.client import CliError, call
from controller.cli.output import Format, Output
from mssp.v1 import operator_pb2

app = typer.Typer(help="List and rotate the push-signing keys gateways trust.", no_args_is_help=True)


def _show(reply: operator_pb2.SigningKeyList, fmt: Format) -> None:
    if fmt is Format.json:
        output.print_json(reply)
        return
    t = output.table("key id", "active", "created", "refused by gateways from")
    for key in reply.keys:
        output.add_row(t, key.key_id, output.yes_no(key.active), output.relative(key.created_at_ms),
                       output.when(key.retires_at_ms, never="-"))
    output.console().print(t)


@app.command("list")
def list_(ctx: typer.Context, fmt: Output = Format.table) -> None:
    """The trusted keys, newest first: the active one signs what is sent now."""
    _show(call(ctx, "ListSigningKeys", operator_pb2.ListSigningKeysRequest()), fmt)


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    overlap: str | None = typer.Option(
        None, "--overlap", help="how long gateways still accept the old key, e.g. 7d (server default)"),
    force: bool = typer.Option(
        False, "--force", help="rotate even though some gateways run agents that cannot follow it"),
    fmt: Output = Format.table,
) -> None:
    """Make a new signing key: announced to every gateway in a push signed by the current one,
    then used for every push; the current key is refused once the overlap has passed."""
    seconds = parse_ttl_seconds(overlap, "--overlap")
    if overlap is not None and seconds <= 0:
        raise CliError("--overlap must be longer than 0s")
    request = operator_pb2.RotateSigningKeyRequest(overlap_seconds=seconds, force=force)
    reply = call(ctx, "RotateSigningKey", request)
    if fmt is Format.table:
        active = next((k.key_id for k in reply.keys if k.active), "?")
        note = "announced to the fleet" if reply.announced else (
            "not announced (broker unavailable): gateways fetch the key set from the controller "
            "when the new key's first push does not verify")
        output.console().print(f"signing key [bold]{active}[/bold] is active; {note}")
    _show(reply, fmt)
