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
    api_listen: str | None = typer.Option(
        None, "--api-listen", help='tenant API HOST:PORT or "off" (env MSSP_API_LISTEN; 127.0.0.1:8080)'
    ),
    api_tls_cert: Path | None = typer.Option(None, "--api-tls-cert", help="tenant API TLS certificate (PEM)"),
    api_tls_key: Path | None = typer.Option(None, "--api-tls-key", help="tenant API TLS private key (PEM)"),
    api_insecure_http: bool = typer.Option(
        False, "--api-insecure-http", help="allow the tenant API on a non-loopback address without TLS"
    ),
    plans_file: Path | None = typer.Option(
        None, "--plans-file", help="billing plans YAML (env MSSP_PLANS_FILE; default <data dir>/plans.yaml)"
    ),
    metrics_listen: str | None = typer.Option(
        None, "--metrics-listen",
        help="serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 127.0.0.1:9464 "
        "(env MSSP_METRICS_LISTEN; default off)",
    ),
) -> None:
    """Run the controller in the foreground until SIGINT/SIGTERM.

    With --metrics-listen it also serves Prometheus metrics (plain HTTP: keep it on loopback or a
    monitoring network)."""
    settings = settings_from(
        ctx, data_dir=data_dir, db_url=db_url, nats_url=nats_url, grpc_listen=grpc_listen,
        gateway_listen=gateway_listen, advertise_host=advertise_host, api_listen=api_listen,
        api_tls_cert=api_tls_cert, api_tls_key=api_tls_key, api_insecure_http=api_insecure_http or None,
        plans_file=plans_file, metrics_listen=metrics_listen,
    )
    if settings.plans_file is not None and not settings.plans_file.is_file():
        raise CliError(f"--plans-file {settings.plans_file}: no such file")
    from controller.domain.errors import InvalidInput, ListenError
    from controller.serve import run_server
    from mssp.common.dirlock import DirLocked

    try:
        run_server(settings)
    except (DirLocked, ListenError, InvalidInput) as exc:  # another server's dir or port; a bad plans file
        raise CliError(str(exc)) from None


@nats_app.command("config")
def nats_config(
    ctx: typer.Context,
    data_dir: Path | None = typer.Option(None, "--data-dir", help="controller state (env MSSP_DATA_DIR)"),
    host: str = typer.Option("0.0.0.0", "--host", help="address nats-server listens on"),
    port: int = typer.Option(4222, "--port", min=1, max=65535),
    store_dir: Path | None = typer.Option(None, "--store-dir", help="JetStream storage directory"),
    resolver_dir: Path | None = typer.Option(None, "--resolver-dir", help="account JWT resolver directory"),
    tls: str | None = typer.Option(
        None, "--tls", help="auto|on|off (env MSSP_NATS_TLS; auto: on unless every host is loopback)"
    ),
    tls_dir: Path | None = typer.Option(
        None, "--tls-dir", help="where the broker certificate is written (default: <data dir>/nats/tls)"
    ),
    tls_hosts: list[str] = typer.Option(
        [], "--tls-host", help="name or address clients use to reach the broker (repeatable)"
    ),
    sync_interval: str | None = typer.Option(
        None, "--sync-interval",
        help="JetStream fsync: always (the default), a duration like 10s, or default (2m); "
        "env MSSP_NATS_SYNC_INTERVAL",
    ),
) -> None:
    """Print a nats-server config trusting this controller's operator, for an external broker.

    With TLS it also issues the broker a certificate from the controller's CA (the one agents pin)."""
    settings = settings_from(ctx, data_dir=data_dir, nats_tls=tls, nats_sync_interval=sync_interval)
    from controller.nats.auth import NatsIdentity
    from controller.nats.tls import broker_hosts, issue_broker_tls, tls_wanted
    from controller.pki import CertificateAuthority

    identity = NatsIdentity.load_or_create(settings.nats_dir)
    extra: dict[str, Any] = {
        k: v for k, v in (("store_dir", store_dir), ("resolver_dir", resolver_dir)) if v is not None
    }
    if tls_wanted(settings.nats_tls, [host, *tls_hosts]):
        ca = CertificateAuthority.load_or_create(settings.pki_dir)
        hosts = broker_hosts(listen_host=host, extra=[*tls_hosts, *settings.nats_cert_hosts])
        extra["tls_block"] = issue_broker_tls(ca, tls_dir or settings.nats_dir / "tls", hosts).server_block()
    extra["sync_interval"] = settings.jetstream_sync_interval
    text = identity.server_config(host=host, port=port, **extra)
    typer.echo(text.rstrip("\n"))


def demo() -> None:
    """Run the whole product on this machine for a minute: controller, agents, pushes, convergence."""
    from controller.demo import run_demo

    run_demo()
