"""`msspctl ca`: the controller's certificate authority, and its rollover."""

from __future__ import annotations

import typer

from controller.cli import output
from controller.cli.args import parse_ttl_seconds
from controller.cli.client import CliError, call
from controller.cli.output import Format, Output
from mssp.v1 import operator_pb2

app = typer.Typer(help="Show and roll over the CA gateways and the controller's servers trust.",
                  no_args_is_help=True)


def _ca(cert: operator_pb2.CaCertificate) -> str:
    return f"{cert.fingerprint}  (until {output.iso(cert.not_after_ms)})"


def _show(reply: operator_pb2.CaStatus, fmt: Format) -> None:
    if fmt is Format.json:
        output.print_json(reply)
        return
    rows: list[tuple[str, str]] = [("current", _ca(reply.current)), ("subject", reply.current.subject)]
    if reply.HasField("next"):
        rows += [("next", _ca(reply.next)), ("next subject", reply.next.subject),
                 ("overlap ends", output.when(reply.overlap_ends_ms)
                  + "; the old CA is dropped at the first controller start after it")]
    if reply.HasField("previous"):
        rows += [("previous", _ca(reply.previous)), ("finished", output.when(reply.finished_at_ms))]
    rows += [("gateways enrolled", str(reply.gateways_enrolled)),
             ("still on the old CA" if reply.HasField("next") else "not on this CA",
              str(reply.gateways_on_old_ca))]
    output.console().print(output.details(*rows))


@app.command("show")
def show(ctx: typer.Context, fmt: Output = Format.table) -> None:
    """The current CA (its fingerprint is what enrollment tokens pin), a rollover under way, and how
    many gateways still hold a certificate from the old CA."""
    _show(call(ctx, "ShowCa", operator_pb2.ShowCaRequest()), fmt)


@app.command("rollover")
def rollover(
    ctx: typer.Context,
    overlap: str | None = typer.Option(
        None, "--overlap", help="how long gateways trust both CAs, e.g. 30d (server default: 30d)"),
    force: bool = typer.Option(
        False, "--force", help="roll over even though some gateways run agents that cannot follow it"),
    fmt: Output = Format.table,
) -> None:
    """Make a new CA. During the overlap gateways trust both and renew onto the new one; the old CA
    is dropped (server certificates re-issued, its client certificates refused) at the first
    controller start after the overlap has ended."""
    seconds = parse_ttl_seconds(overlap, "--overlap")
    if overlap is not None and seconds <= 0:
        raise CliError("--overlap must be longer than 0s")
    reply = call(ctx, "RolloverCa", operator_pb2.RolloverCaRequest(overlap_seconds=seconds, force=force))
    if fmt is Format.table:
        until = output.iso(reply.overlap_ends_ms)
        output.console().print(f"new CA [bold]{output.esc(reply.next.fingerprint)}[/bold] signs gateway "
                               f"certificates now; both are trusted until {until}")
    _show(reply, fmt)
