"""`msspctl agent bundle`: the offline install bundle of the lean agent that provisioning copies to
routers (controller/provisioning/bundle.py). It runs here, not on the controller: no gRPC call."""

from __future__ import annotations

from pathlib import Path

import typer

from controller.cli import output
from controller.cli.client import CliError
from controller.cli.output import Format, Output

app = typer.Typer(help="The router agent: build its offline install bundle.", no_args_is_help=True)


@app.command("bundle")
def bundle(
    out: Path = typer.Option(..., "--out", help="directory to create (absent or empty)"),
    python: str = typer.Option("3.11", "--python", help="the routers' CPython version"),
    platform: list[str] = typer.Option(
        [], "--platform", help="router platform, repeatable: manylinux_x86_64 (default), manylinux_aarch64, "
        "musllinux_x86_64, musllinux_aarch64"),
    source: Path | None = typer.Option(None, "--source", help="the project's source tree (default: this "
                                       "install's)"),
    fmt: Output = Format.table,
) -> None:
    """Build the agent's wheel and its dependencies' wheels for each platform into one directory."""
    from controller.provisioning.bundle import BundleError, build

    try:
        with output.console().status(f"building the agent bundle in {out}"):
            made = build(out, python=python, platforms=platform, source=source)
    except BundleError as exc:
        raise CliError(str(exc)) from None
    if fmt is Format.json:
        output.print_json(made.manifest())
        return
    output.console().print(
        f"agent bundle {output.esc(made.version)} for Python {made.python} on {', '.join(made.platforms)}: "
        f"{len(made.files)} wheels in {output.esc(str(made.directory))}")
