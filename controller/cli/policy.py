"""`msspctl policy`: a tenant's egress policy as YAML; the controller validates and versions it."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from controller.cli import output
from controller.cli.client import CliError, call
from controller.cli.output import Format, Output
from mssp.v1 import operator_pb2

app = typer.Typer(help="Set and show tenant egress policies.", no_args_is_help=True)

MAX_POLICY_BYTES = 1024 * 1024  # far above any sane policy, well below the gRPC message limit


@app.command("set")
def set_(
    ctx: typer.Context,
    tenant: str = typer.Argument(..., help="tenant name"),
    file: Path = typer.Option(..., "--file", "-f", help="policy YAML file ('-' for stdin)"),
    fmt: Output = Format.table,
) -> None:
    """Replace a tenant's policy with the YAML in FILE (all or nothing: invalid YAML changes nothing)."""
    text = read_policy_file(file)
    info = call(ctx, "SetPolicy", operator_pb2.SetPolicyRequest(tenant=tenant, yaml=text))
    if fmt is Format.json:
        output.print_json(info)
    else:
        output.console().print(
            f"policy for {output.esc(info.tenant)} set: version {info.version} "
            f"({len(info.bundle.rules)} rule{'s' if len(info.bundle.rules) != 1 else ''})"
        )


@app.command("show")
def show(
    ctx: typer.Context, tenant: str = typer.Argument(..., help="tenant name"), fmt: Output = Format.table
) -> None:
    """Show a tenant's current policy YAML and version."""
    info = call(ctx, "GetPolicy", operator_pb2.TenantRef(name=tenant))
    if fmt is Format.json:
        output.print_json(info)
        return
    if not info.version:
        output.plain(f"# tenant {info.tenant}: no policy set (version 0, default allow)")
        return
    output.plain(f"# tenant {info.tenant}: policy version {info.version}, "
                 f"updated {output.when(info.updated_at_ms)}")
    output.plain(info.yaml)


def read_policy_file(path: Path) -> str:
    """Read client-side so the error names the operator's file, not a path on the controller."""
    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read(MAX_POLICY_BYTES + 1)
        else:
            with path.open("rb") as fh:
                data = fh.read(MAX_POLICY_BYTES + 1)
    except FileNotFoundError:
        raise CliError(f"policy file {path} not found") from None
    except IsADirectoryError:
        raise CliError(f"policy file {path} is a directory") from None
    except OSError as exc:
        raise CliError(f"cannot read policy file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_POLICY_BYTES:
        raise CliError(f"policy file {path} is larger than {MAX_POLICY_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"policy file {path} is not UTF-8 text (byte {exc.start})") from None
