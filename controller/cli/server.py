"""`msspctl server run`, `msspctl nats config` and `msspctl demo`: the commands that run the
controller itself rather than talk to it. Heavy imports stay inside the commands so the
operator-side commands start fast and work without the server stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from controller.cli.client import CliError, Options

server_app = typer.Typer(help="Run the controller.", no_args_is_help=True)
nats_app = typer.Typer(help="NATS broker configuration for external deployments.", no_args_is_help=True)


def settings_from(ctx: typer.Context, **flags: Any) -> Any:
    """Settings with only the flags that were given, so MSSP_* env still fills in the rest."""
    from pydantic import ValidationError

    from controller.config import Settings

    opts = ctx.find_object(Options) or Options()
    if flags.get("data_dir") is None and opts.data_dir is not None:
        flags["data_dir"] = opts.data_dir
    given = {key: value for key, value in flags.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "settings"
        raise CliError(f"invalid setting {where}: {first.get('msg', exc)}") from None


@server_app.command("run")
def run(
    ctx: typer.Context,
    data_dir: Path | None = typer.Option(None, "--data-dir", help="controller state (env MSSP_DATA_DIR)"),
    db_url: str | None = typer.Option(
        None, "--db-url", help="SQLAlchemy URL (default: SQLite in the data dir)"
    ),
    nats_url: str | None = typer.Option(
        None, "--nats-url", help="external NATS URL(s), comma separated (default: embedded nats-server)"
    ),
    grpc_listen: str | None = typer.Option(None, "--grpc-listen", help="enrollment + operator API HOST:PORT"),
    gateway_listen: str | None = typer.Option(None, "--gateway-listen", help="gateway mTLS API HOST:PORT"),
    advertise_host: str | None = typer.Option(None, "--advertise-host", help="host gateways use to reach us"),
) -> None:
    """Run the controller in the foreground until SIGINT/SIGTERM."""
    settings = settings_from(
        ctx, data_dir=data_dir, db_url=db_url, nats_url=nats_url, grpc_listen=grpc_listen,
        gateway_listen=gateway_listen, advertise_host=advertise_host,
    )
    from controller.app import run_server

    run_server(settings)


@nats_app.command("config")
def nats_config(
    ctx: typer.Context,
    data_dir: Path | None = typer.Option(None, "--data-dir", help="controller state (env MSSP_DATA_DIR)"),
    host: str = typer.Option("0.0.0.0", "--host", help="address nats-server listens on"),
    port: int = typer.Option(4222, "--port", min=1, max=65535),
    store_dir: Path | None = typer.Option(None, "--store-dir", help="JetStream storage directory"),
    resolver_dir: Path | None = typer.Option(None, "--resolver-dir", help="account JWT resolver directory"),
) -> None:
    """Print a nats-server config trusting this controller's operator, for an external broker."""
    settings = settings_from(ctx, data_dir=data_dir)
    from controller.nats.auth import NatsIdentity

    identity = NatsIdentity.load_or_create(settings.nats_dir)
    extra = {k: v for k, v in (("store_dir", store_dir), ("resolver_dir", resolver_dir)) if v is not None}
    text = identity.server_config(host=host, port=port, **extra)
    typer.echo(text.rstrip("\n"))


def demo() -> None:
    """Run the whole product on this machine for a minute: controller, agents, pushes, convergence."""
    from controller.demo import run_demo

    run_demo()
