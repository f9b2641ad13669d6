"""`msspctl policy`: a tenant's egress policy and per-gateway overrides as YAML; the controller
validates, versions and keeps every version (history, diff, rollback)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from controller.cli import output
from controller.cli.args import parse_gateway_ref
from controller.cli.client import CliError, call
from controller.cli.output import Format, Output
from mssp.v1 import operator_pb2

app = typer.Typer(help="Set, show and roll back tenant egress policies and per-gateway overrides.",
                  no_args_is_help=True)

MAX_POLICY_BYTES = 1024 * 1024  # far above any sane policy, well below the gRPC message limit


TARGET_HELP = "TENANT for the tenant's policy, or TENANT/NAME for one gateway's override"


def parse_target(raw: str) -> tuple[str, str]:
    """`acme` -> ("acme", ""), `acme/branch-1` -> ("acme", "branch-1")."""
    if "/" in raw:
        return parse_gateway_ref(raw)
    if not raw.strip():
        raise CliError("expected TENANT or TENANT/NAME, got an empty name")
    return raw.strip(), ""


def _label(tenant: str, gateway: str) -> str:
    return f"{tenant}/{gateway}" if gateway else tenant


@app.command("set")
def set_(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar="TENANT[/NAME]", help=TARGET_HELP),
    file: Path = typer.Option(..., "--file", "-f", help="policy YAML file ('-' for stdin)"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="validate and show what would change and for which gateways; store nothing"),
    fmt: Output = Format.table,
) -> None:
    """Replace a tenant's policy, or with TENANT/NAME set one gateway's override (a partial policy
    merged on the tenant's: see README). All or nothing: an invalid document changes nothing."""
    tenant, gateway = parse_target(target)
    text = read_policy_file(file)
    request = operator_pb2.SetPolicyRequest(tenant=tenant, yaml=text, gateway=gateway)
    if dry_run:
        _show_preview(call(ctx, "DiffProposedPolicy", request), fmt)
        return
    info = call(ctx, "SetPolicy", request)
    if fmt is Format.json:
        output.print_json(info)
        return
    rules = len(info.bundle.rules)
    what = f"override for {_label(tenant, gateway)}" if gateway else f"policy for {info.tenant}"
    plural = "s" if rules != 1 else ""
    output.console().print(f"{output.esc(what)} set: version {info.version} "
                           f"({rules} rule{plural}{' in force there' if gateway else ''})")


def _show_preview(preview: operator_pb2.PolicyPreview, fmt: Format) -> None:
    if fmt is Format.json:
        output.print_json(preview)
        return
    diff = preview.diff
    label = _label(diff.tenant, diff.gateway)
    if preview.unchanged:
        output.plain(f"dry run: the document is {label}'s current version {diff.from_version}; "
                     "nothing would change")
        return
    output.plain(f"dry run: nothing stored, nothing pushed. Against {label} "
                 + (f"version {diff.from_version}:" if diff.from_version else "(none set yet):"))
    _print_diff(diff)
    t = output.table("gateway", "override", "override shadows", title="would get a new policy")
    for g in preview.gateways:
        output.add_row(t, g.gateway, output.yes_no(g.has_override), ", ".join(g.shadows) or "-")
    output.console().print(t if preview.gateways else "no gateways would get a new policy (none added yet)")


def _print_diff(diff: operator_pb2.PolicyDiff) -> None:
    output.plain(diff.unified_diff or "(the documents are identical)")
    for word, names in (("added", diff.rules_added), ("removed", diff.rules_removed),
                        ("changed", diff.rules_changed)):
        if names:
            output.plain(f"rules {word}: {', '.join(names)}")
    if diff.rules_reordered:
        output.plain("rules reordered")
    if diff.default_before != diff.default_after:
        output.plain(f"default action: {diff.default_before or 'inherited'} -> "
                     f"{diff.default_after or 'inherited'}")


@app.command("show")
def show(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar="TENANT[/NAME]", help=TARGET_HELP),
    fmt: Output = Format.table,
) -> None:
    """Show a tenant's current policy YAML and version, or a gateway's override and the effective
    (merged) policy it enforces."""
    tenant, gateway = parse_target(target)
    if gateway:
        info = call(ctx, "GetGatewayPolicy", operator_pb2.GatewayRef(tenant=tenant, name=gateway))
        if fmt is Format.json:
            output.print_json(info)
            return
        label = _label(tenant, info.gateway)
        if info.version:
            output.plain(f"# gateway {label}: override version {info.version}, "
                         f"updated {output.when(info.updated_at_ms)}")
            output.plain(info.yaml)
        else:
            output.plain(f"# gateway {label}: no override (it enforces the tenant's policy)")
        output.plain(f"# effective policy of {label}:")
        output.plain(info.effective_yaml)
        return
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


@app.command("unset")
def unset(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="TENANT/NAME", help="the gateway, e.g. acme/branch-1"),
    fmt: Output = Format.table,
) -> None:
    """Remove a gateway's override (a new version): it enforces the tenant's policy again."""
    tenant, gateway = parse_gateway_ref(ref)
    info = call(ctx, "UnsetPolicy", operator_pb2.GatewayRef(tenant=tenant, name=gateway))
    if fmt is Format.json:
        output.print_json(info)
        return
    output.console().print(f"override for {output.esc(_label(tenant, gateway))} removed: "
                           "it enforces the tenant's policy")


@app.command("history")
def history(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar="TENANT[/NAME]", help=TARGET_HELP),
    fmt: Output = Format.table,
) -> None:
    """Every stored version, oldest first: when, who, and what changed. Versions are numbered per
    tenant (its policy and its gateways' overrides share the counter)."""
    tenant, gateway = parse_target(target)
    reply = call(ctx, "ListPolicyVersions", operator_pb2.PolicyTarget(tenant=tenant, gateway=gateway))
    if fmt is Format.json:
        output.print_json(reply)
        return
    t = output.table("version", "when", "who", "rules", "default", "summary",
                     title=f"policy history of {_label(tenant, gateway)}")
    for v in reply.versions:
        output.add_row(t, f"{v.version}{' (current)' if v.current else ''}", output.iso(v.created_at_ms),
                       v.created_by or "-", "-" if v.removed else str(v.rules),
                       "-" if v.removed else v.default_action or "inherited", v.summary)
    if not reply.versions:
        output.plain(f"no policy versions stored for {_label(tenant, gateway)}")
        return
    output.console().print(t)


@app.command("diff")
def diff(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar="TENANT[/NAME]", help=TARGET_HELP),
    version_a: int = typer.Argument(..., metavar="A", min=1, help="the older version"),
    version_b: int = typer.Argument(..., metavar="B", min=1, help="the newer version"),
    fmt: Output = Format.table,
) -> None:
    """The unified diff of two versions' YAML and what changed in meaning (rules, default action)."""
    tenant, gateway = parse_target(target)
    where = operator_pb2.PolicyTarget(tenant=tenant, gateway=gateway)
    request = operator_pb2.DiffPolicyRequest(target=where, from_version=version_a, to_version=version_b)
    reply = call(ctx, "DiffPolicy", request)
    if fmt is Format.json:
        output.print_json(reply)
    else:
        _print_diff(reply)


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar="TENANT[/NAME]", help=TARGET_HELP),
    version: int = typer.Argument(..., min=1, help="the version whose document to restore"),
    fmt: Output = Format.table,
) -> None:
    """Store an earlier version's document as a new version, pushed like any set."""
    tenant, gateway = parse_target(target)
    where = operator_pb2.PolicyTarget(tenant=tenant, gateway=gateway)
    request = operator_pb2.RollbackPolicyRequest(target=where, version=version)
    info = call(ctx, "RollbackPolicy", request)
    if fmt is Format.json:
        output.print_json(info)
    elif info.unchanged:
        output.console().print(f"{output.esc(_label(tenant, gateway))}: {output.esc(info.summary)}")
    else:
        output.console().print(f"{output.esc(_label(tenant, gateway))} rolled back to the document of "
                               f"version {version}: now version {info.version}")


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
