"""`msspctl gateway provision|upgrade|decommission|runs|forget-host-key`: routers set up over SSH by
the controller (playbooks/ through ansible-runner), with a progress line per host and a summary.

Everything the CLI can judge is judged before the call (hosts.csv line by line, the key file), so a
bad invocation changes nothing. The key is read here and sent for the one run; it is never stored."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn

from controller.cli import output
from controller.cli.args import parse_gateway_ref
from controller.cli.client import CliError, call, stream
from controller.cli.gateway import REF_HELP, app
from controller.cli.output import Format, Output
from controller.domain.errors import InvalidInput
from controller.provisioning.targets import (
    DEFAULT_PREFIX,
    check_private_key,
    parse_hosts_csv,
    parse_jump,
    target,
)
from mssp.v1 import operator_pb2, provisioning_pb2

SERVICE = "ProvisioningService"
RUN_TIMEOUT = 4 * 3600.0
FAILED = ("failed", "unreachable", "skipped")

_KEY = typer.Option(..., "--key", help="SSH private key for the routers (and the jump host)")
_BUNDLE = typer.Option(..., "--bundle", help="agent bundle dir from `msspctl agent bundle` (on the "
                       "controller's host)")
_BECOME = typer.Option(False, "--become", help="become root on the router (sudo)")
_JUMP = typer.Option("", "--jump", help="USER@BASTION[:PORT] to reach routers behind NAT")
_SERVICE = typer.Option("auto", "--service", help="auto, systemd, procd or supervisor")
_WAIT = typer.Option(180, "--wait", help="seconds each router may take to enroll and converge")
_OPTIONS = typer.Option(None, "--router-options", help="JSON file written as each router's "
                        "enforcement.json (LAN/WAN interfaces, DNS)")


def _access(key: Path, become: bool, jump: str) -> provisioning_pb2.SshAccess:
    try:
        parse_jump(jump)
    except InvalidInput as exc:
        raise CliError(f"--jump: {exc}") from None
    try:
        data = key.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read --key {key}: {exc.strerror}") from None
    try:
        check_private_key(data)
    except InvalidInput:
        raise CliError(f"--key {key} is not an SSH private key (OpenSSH or PEM format)") from None
    return provisioning_pb2.SshAccess(private_key=data, become=become, jump=jump)


def _options(bundle: Path | None, router_options: Path | None, service: str,
             wait: int) -> provisioning_pb2.RunOptions:
    text = ""
    if router_options is not None:
        try:
            text = router_options.read_text()
        except OSError as exc:
            raise CliError(f"cannot read --router-options {router_options}: {exc.strerror}") from None
    return provisioning_pb2.RunOptions(bundle_dir=str(bundle.resolve()) if bundle else "",
                                       router_options_json=text, service_manager=service, wait_seconds=wait)


def _hosts(ref: str | None, host: str | None, port: int, user: str, prefix: str, tenant: str,
           hosts_file: Path | None) -> tuple[str, list[provisioning_pb2.SshHost]]:
    if (ref is None) == (hosts_file is None):
        raise CliError("give TENANT/NAME --host ADDR for one router, or --tenant T -f hosts.csv for many")
    try:
        if hosts_file is not None:
            if not tenant:
                raise CliError("-f hosts.csv needs --tenant")
            try:
                text = hosts_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CliError(f"cannot read {hosts_file}: {exc}") from None
            targets = parse_hosts_csv(text)
        else:
            assert ref is not None
            tenant, name = parse_gateway_ref(ref)
            if not host:
                raise CliError("--host ADDR is needed with TENANT/NAME")
            targets = [target(name, host, port, user, prefix)]
    except InvalidInput as exc:
        raise CliError(f"{hosts_file or 'router'}: {exc}") from None
    return tenant, [provisioning_pb2.SshHost(name=t.name, host=t.host, port=t.port, user=t.user,
                                             prefix=t.prefix) for t in targets]


def _follow(ctx: typer.Context, method: str, request: object, fmt: Format) -> None:
    """Stream the run: a spinner line per host for people, then the summary; exit 1 if any failed."""
    con = output.console()
    done: provisioning_pb2.RunSummary | None = None
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=con, transient=True,
                  disable=fmt is Format.json or not con.is_terminal) as progress:
        lines: dict[str, int] = {}
        for event in stream(ctx, method, request, service=SERVICE, timeout=RUN_TIMEOUT):
            if event.HasField("done"):
                done = event.done
                continue
            h = event.host
            if h.gateway not in lines:
                lines[h.gateway] = progress.add_task("", total=None)
            text = f"{output.esc(h.gateway)} ({output.esc(h.host)}): {h.state}, {h.changed}/{h.ok} changed"
            progress.update(lines[h.gateway], description=f"{text} - {output.esc(h.task)}")
    if done is None:
        raise CliError("the controller ended the run without a summary; see `msspctl gateway runs`")
    if fmt is Format.json:
        output.print_json(done)
    else:
        con.print(summary_table(done))
    if done.status != "ok" or any(h.state in FAILED for h in done.hosts):
        raise typer.Exit(1)


def summary_table(run: provisioning_pb2.RunSummary) -> object:
    t = output.table("gateway", "host", "result", "ok", "changed", "seconds", "failed task", "message",
                     title=f"{run.kind} run {run.id[:12]} ({run.tenant}): {run.status}")
    for h in run.hosts:
        failed = h.state in FAILED
        output.add_row(t, h.gateway, h.host, h.state, str(h.ok), str(h.changed), f"{h.seconds:.1f}",
                       h.task if failed else "", h.message if failed else "")
    return t


@app.command("provision")
def provision(
    ctx: typer.Context,
    ref: str | None = typer.Argument(None, metavar="[TENANT/NAME]", help=REF_HELP),
    host: str | None = typer.Option(None, "--host", help="the router's SSH address"),
    port: int = typer.Option(22, "--port"),
    user: str = typer.Option("root", "--user"),
    prefix: str = typer.Option(DEFAULT_PREFIX, "--prefix", help="where the agent lives on the router"),
    tenant: str = typer.Option("", "--tenant", "-t", help="with -f: the tenant of every router"),
    hosts_file: Path | None = typer.Option(None, "-f", "--file",
                                           help="hosts.csv: name,host[,port,user,prefix]"),
    key: Path = _KEY, bundle: Path = _BUNDLE, become: bool = _BECOME, jump: str = _JUMP,
    router_options: Path | None = _OPTIONS, service: str = _SERVICE, wait: int = _WAIT,
    fmt: Output = Format.table,
) -> None:
    """Install, configure, start and enroll the agent on routers; creates the gateways not yet known."""
    tenant, hosts = _hosts(ref, host, port, user, prefix, tenant, hosts_file)
    request = provisioning_pb2.ProvisionRequest(tenant=tenant, hosts=hosts, ssh=_access(key, become, jump),
                                                options=_options(bundle, router_options, service, wait))
    _follow(ctx, "Provision", request, fmt)


@app.command("upgrade")
def upgrade(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, metavar="[NAME]...", help="gateways (default: all provisioned)"),
    tenant: str = typer.Option(..., "--tenant", "-t"),
    batch: str = typer.Option("1", "--batch", help="routers per batch: a count or a percentage (10%)"),
    key: Path = _KEY, bundle: Path = _BUNDLE, become: bool = _BECOME,
    service: str = _SERVICE, wait: int = _WAIT, fmt: Output = Format.table,
) -> None:
    """Roll a new agent bundle out in batches; a batch that fails to converge on it stops the run."""
    request = provisioning_pb2.UpgradeRequest(
        tenant=tenant, gateways=names or [], batch=batch, ssh=_access(key, become, ""),
        options=_options(bundle, None, service, wait))
    _follow(ctx, "Upgrade", request, fmt)


@app.command("decommission")
def decommission(
    ctx: typer.Context, ref: str = typer.Argument(..., metavar="TENANT/NAME", help=REF_HELP),
    key: Path = _KEY, become: bool = _BECOME, service: str = _SERVICE, fmt: Output = Format.table,
) -> None:
    """Stop the agent, remove its rules, DNS config, service and files, then revoke the gateway."""
    tenant, name = parse_gateway_ref(ref)
    request = provisioning_pb2.DecommissionRequest(
        tenant=tenant, name=name, ssh=_access(key, become, ""), options=_options(None, None, service, 60))
    _follow(ctx, "Decommission", request, fmt)


@app.command("runs")
def runs(
    ctx: typer.Context, tenant: str = typer.Option(..., "--tenant", "-t"),
    limit: int = typer.Option(20, "--limit"), fmt: Output = Format.table,
) -> None:
    """The tenant's provisioning runs, newest first, with each host's result."""
    request = provisioning_pb2.ListProvisionRunsRequest(tenant=tenant, limit=limit)
    found = call(ctx, "ListProvisionRuns", request, service=SERVICE).runs
    if fmt is Format.json:
        output.print_json(found)
        return
    for run in found:
        output.console().print(summary_table(run))


@app.command("forget-host-key")
def forget_host_key(
    ctx: typer.Context, ref: str = typer.Argument(..., metavar="TENANT/NAME", help=REF_HELP),
) -> None:
    """Drop the router's pinned SSH host key: the next run trusts the key it meets (reinstalled router)."""
    tenant, name = parse_gateway_ref(ref)
    old = call(ctx, "ForgetHostKey", operator_pb2.GatewayRef(tenant=tenant, name=name), service=SERVICE)
    output.console().print(f"forgot host key {output.esc(old.fingerprint)} of {output.esc(tenant)}/"
                           f"{output.esc(name)}")
