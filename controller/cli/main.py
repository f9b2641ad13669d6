"""`msspctl`: the MSSP operator's CLI. It talks to the controller's OperatorService over gRPC only.

main() is the one place errors turn into output: one `error: ...` line on stderr and a non-zero
exit, never a traceback (MSSP_DEBUG=1 re-raises for developers).
"""

from __future__ import annotations

import json
import os
import sys
from importlib import metadata
from pathlib import Path

import typer

from controller.cli import (
    agent,
    apikey,
    backup,
    billing,
    ca,
    feeds,
    fleet,
    gateway,
    global_options,
    ioc,
    operators,
    policy,
    server,
    sightings,
    signing,
    telemetry,
    tenant,
)
from controller.cli import ioc_files as ioc_files  # registers ioc import/export
from controller.cli import provision as provision  # registers gateway provision/upgrade/decommission
from controller.cli.client import CliError, Options
from mssp.common.text import clean_line

app = typer.Typer(
    name="msspctl",
    help="Operate the managed-gateway fleet: tenants, gateways, policies, IOCs, fleet health.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
)


def package_version() -> str:
    try:
        return metadata.version("mssp-gateway")
    except metadata.PackageNotFoundError:  # run from a source tree without an install
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        print(f"msspctl {package_version()}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="controller data dir (env MSSP_DATA_DIR): controller.json, token, CA"
    ),
    controller: str | None = typer.Option(
        None, "--controller", help="controller API HOST:PORT (env MSSP_CONTROLLER; default: controller.json)"
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", help="seconds to wait for each call (env MSSP_TIMEOUT, default 15)"
    ),
    _version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                  help="print the version and exit"),
) -> None:
    ctx.obj = Options(data_dir=data_dir, controller=controller, timeout=timeout)


app.add_typer(tenant.app, name="tenant")
app.add_typer(apikey.app, name="apikey")
app.add_typer(apikey.partner_app, name="partner")
app.add_typer(billing.app, name="billing")
app.add_typer(gateway.app, name="gateway")
app.add_typer(agent.app, name="agent")
app.add_typer(policy.app, name="policy")
app.add_typer(ioc.app, name="ioc")
app.add_typer(feeds.feed_app, name="feed")
app.add_typer(feeds.allow_app, name="allowlist")
app.add_typer(sightings.app, name="sighting")
app.add_typer(fleet.app, name="fleet")
app.add_typer(signing.app, name="signing-key")
app.add_typer(ca.app, name="ca")
app.add_typer(operators.app, name="operator")
app.add_typer(operators.audit_app, name="audit")
app.add_typer(telemetry.alerts_app, name="alerts")
app.add_typer(telemetry.telemetry_app, name="telemetry")
app.command("usage")(telemetry.usage)
app.add_typer(server.server_app, name="server")
app.add_typer(server.nats_app, name="nats")
app.command("demo")(server.demo)
app.command("backup")(backup.backup)
app.command("restore")(backup.restore)


def fail(message: str, code: int = 1) -> None:
    sys.stderr.write(f"error: {clean_line(' '.join(message.split()))}\n")  # server text may quote a gateway
    sys.stderr.flush()
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    command = typer.main.get_command(app)
    args = global_options.hoist(command, list(sys.argv[1:] if argv is None else argv))
    try:
        code = command.main(args=args, prog_name="msspctl", standalone_mode=False)
    except CliError as exc:
        if exc.problems and _wants_json(args):  # scripts get every mistake as data, too
            print(json.dumps({"error": str(exc), "problems": list(exc.problems)}, indent=2))
        fail(str(exc))
    except typer.TyperException as exc:
        fail(_usage_message(exc), getattr(exc, "exit_code", 2))
    except typer.Abort:
        fail("aborted", 130)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:
        if os.environ.get("MSSP_DEBUG"):
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (rerun with MSSP_DEBUG=1 for a traceback)")
    raise SystemExit(code if isinstance(code, int) else 0)


def _wants_json(args: list[str]) -> bool:
    pairs = zip(args, [*args[1:], ""], strict=True)
    return any(a in ("-o=json", "--output=json") or (a in ("-o", "--output") and b.lower() == "json")
               for a, b in pairs)


def _usage_message(exc: typer.TyperException) -> str:
    """Bad arguments: click's message plus where to read the usage, on one line."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":
        # Typer's rich help prints itself while the error is built; plain help comes as the message.
        if exc.format_message().strip():
            sys.stdout.write(exc.format_message() + "\n")
        raise SystemExit(2)
    message = exc.format_message()
    if ctx is not None:
        message += f" (see `{ctx.command_path} --help`)"
    return message
