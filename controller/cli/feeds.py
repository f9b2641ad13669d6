"""`msspctl feed ...` (feeds the controller refreshes itself) and `msspctl allowlist ...` (values the
never-block guard refuses to block)."""

from __future__ import annotations

import typer

from controller.cli import output
from controller.cli.args import parse_ttl_seconds
from controller.cli.client import CliError, call
from controller.cli.ioc import SCOPE_HELP
from controller.cli.ioc_files import print_result
from controller.cli.output import Format, Output
from mssp.v1 import intel_pb2

feed_app = typer.Typer(help="Feeds the controller fetches and syncs on schedule.", no_args_is_help=True)
allow_app = typer.Typer(help="Values that are never blocked, whatever the source.", no_args_is_help=True)
INTEL = "IntelService"


@feed_app.command("add")
def feed_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="a short name: lower-case letters, digits, '-'"),
    url: str = typer.Option("", "--url", help="an http(s) URL the controller fetches"),
    path: str = typer.Option("", "--path", help="an absolute path on the controller (file or MISP feed dir)"),
    taxii: str = typer.Option("", "--taxii", help="a TAXII 2.1 API root URL (with --collection)"),
    collection: str = typer.Option("", "--collection", help="the TAXII collection id"),
    token_env: str = typer.Option("", "--token-env",
                                  help="the controller's environment variable with the TAXII bearer token"),
    fmt_in: str = typer.Option("auto", "--format", help="auto | plain | csv | stix | misp"),
    every: str = typer.Option("1h", "--every", help="refresh period, e.g. 30m, 1h, 1d (at least 1m)"),
    scope: str = typer.Option("global", "--scope", "-s", help=SCOPE_HELP),
    confidence: int | None = typer.Option(None, "--confidence", min=0, max=100,
                                          help="every entry's confidence (default: the feed's own, else 80)"),
    tlp: str = typer.Option("", "--tlp", help="marking of its entries when the feed gives none"),
    column: str = typer.Option("", "--column", help="csv: the value column"),
    fmt: Output = Format.table,
) -> None:
    """Add a feed; the controller fetches it at once and then every --every. A list (--url, --path)
    is synced whole on each run; a TAXII collection is pulled incrementally."""
    if sum(map(bool, (url, path, taxii))) != 1:
        raise CliError("give exactly one of --url, --path or --taxii")
    request = intel_pb2.AddFeedRequest(name=name, url=url, path=path, format=fmt_in, column=column, tlp=tlp,
                                       scope=scope, every_seconds=parse_ttl_seconds(every, "--every"),
                                       taxii=taxii, collection=collection, token_env=token_env)
    if confidence is not None:
        request.confidence, request.has_confidence = confidence, True
    info = call(ctx, "AddFeed", request, service=INTEL)
    if fmt is Format.json:
        output.print_json(info)
        return
    output.console().print(f"added feed [bold]{output.esc(info.name)}[/bold] ({output.esc(info.location)}, "
                           f"every {info.every_seconds}s, into {output.esc(info.scope)})")


@feed_app.command("list")
def feed_list(ctx: typer.Context, fmt: Output = Format.table) -> None:
    """Feeds with their last success, last error and entry count."""
    feeds = call(ctx, "ListFeeds", intel_pb2.ListFeedsRequest(), service=INTEL).feeds
    if fmt is Format.json:
        output.print_json(feeds)
        return
    t = output.table("name", "scope", "format", "every", "entries", "last success", "last error", "location")
    for f in feeds:
        output.add_row(t, f.name, f.scope, f.format, f"{f.every_seconds}s", str(f.entries),
                       output.relative(f.last_success_ms), f.last_error or "-", f.location)
    output.console().print(t)


@feed_app.command("run")
def feed_run(ctx: typer.Context, name: str = typer.Argument(...), fmt: Output = Format.table) -> None:
    """Fetch and sync a feed now."""
    run = call(ctx, "RunFeed", intel_pb2.FeedRef(name=name), service=INTEL, timeout=900.0)
    if fmt is Format.json:
        output.print_json(run)
        return
    con = output.console()
    if run.feed.last_error:
        raise CliError(f"feed {name} failed: {run.feed.last_error} (its previous entries stay)")
    if run.not_modified:
        con.print(f"feed {output.esc(name)} not modified since the last run; nothing changed")
    elif run.HasField("result"):
        print_result(run.result)


@feed_app.command("remove")
def feed_remove(ctx: typer.Context, name: str = typer.Argument(...), fmt: Output = Format.table) -> None:
    """Remove a feed and its claims (indicators another source claims stay)."""
    run = call(ctx, "RemoveFeed", intel_pb2.FeedRef(name=name), service=INTEL)
    if fmt is Format.json:
        output.print_json(run)
        return
    output.console().print(f"removed feed {output.esc(name)}: {run.result.removed} claims withdrawn")


@allow_app.command("add")
def allow_add(
    ctx: typer.Context,
    value: str = typer.Argument(..., help="an address, CIDR or domain (a domain covers its subdomains)"),
    scope: str = typer.Option("global", "--scope", "-s", help=SCOPE_HELP),
    note: str = typer.Option("", "--note", help="why (shown in allowlist list)"),
    fmt: Output = Format.table,
) -> None:
    """Never block VALUE in the scope (global: everywhere): ioc add, imports and feeds refuse it."""
    entry = call(ctx, "AddAllow", intel_pb2.AllowRequest(value=value, scope=scope, note=note), service=INTEL)
    if fmt is Format.json:
        output.print_json(entry)
        return
    con = output.console()
    con.print(f"allow-listed {output.esc(entry.value)} in {output.esc(entry.scope)}")
    if entry.matching:
        con.print(f"note: {entry.matching} indicator(s) with this value are still held; "
                  "remove them with `msspctl ioc remove`")


@allow_app.command("remove")
def allow_remove(
    ctx: typer.Context, value: str = typer.Argument(...),
    scope: str = typer.Option("global", "--scope", "-s", help=SCOPE_HELP), fmt: Output = Format.table,
) -> None:
    reply = call(ctx, "RemoveAllow", intel_pb2.AllowRequest(value=value, scope=scope), service=INTEL)
    if fmt is Format.json:
        output.print_json(reply)
        return
    said = "removed" if reply.removed else "was not on the allow-list; nothing changed:"
    output.console().print(f"{said} {output.esc(value)} ({output.esc(scope)})")


@allow_app.command("list")
def allow_list(
    ctx: typer.Context, scope: str = typer.Option("", "--scope", "-s", help=SCOPE_HELP + " (default: all)"),
    fmt: Output = Format.table,
) -> None:
    entries = call(ctx, "ListAllow", intel_pb2.ListAllowRequest(scope=scope), service=INTEL).entries
    if fmt is Format.json:
        output.print_json(entries)
        return
    t = output.table("value", "scope", "note", "added")
    for e in entries:
        output.add_row(t, e.value, e.scope, e.note or "-", output.relative(e.created_at_ms))
    output.console().print(t)
