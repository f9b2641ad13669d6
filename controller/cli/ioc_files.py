"""`msspctl ioc import FILE` and `msspctl ioc export`: indicators in and out as files.

The file goes to the controller as it is (the controller parses and judges every entry); a MISP
feed directory goes as one JSON list of its events. A large file shows upload progress.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from controller.cli import output
from controller.cli.args import parse_ttl_seconds
from controller.cli.client import CliError, call, stream
from controller.cli.ioc import SCOPE_HELP, app
from controller.cli.output import Format, Output
from controller.intel.entries import FeedFormatError
from controller.intel.fetch import FetchError, read_path
from mssp.v1 import intel_pb2

CHUNK = 1024 * 1024
PROGRESS_FROM = 4 * CHUNK  # smaller files go up before a bar could draw
IMPORT_TIMEOUT = 900.0
PROBLEMS_SHOWN = 20


def _chunks(options: intel_pb2.ImportOptions, data: bytes, progress: Progress | None) -> Iterator[
        intel_pb2.ImportChunk]:
    yield intel_pb2.ImportChunk(options=options)
    task = progress.add_task("uploading", total=len(data)) if progress else None
    for start in range(0, len(data), CHUNK):
        yield intel_pb2.ImportChunk(data=data[start : start + CHUNK])
        if progress is not None and task is not None:
            progress.update(task, advance=min(CHUNK, len(data) - start))
    if progress is not None and task is not None:
        progress.update(task, description="importing (parse, validate, store, push)")


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="a list, CSV, STIX 2.1 bundle, MISP event or MISP feed directory"),
    fmt_in: str = typer.Option("auto", "--format", help="auto | plain | csv | stix | misp"),
    scope: str = typer.Option("global", "--scope", "-s", help=SCOPE_HELP),
    source: str = typer.Option("", "--source", help="the claim's source (default: import)"),
    confidence: int | None = typer.Option(None, "--confidence", min=0, max=100,
                                          help="every entry's confidence (default: the feed's, else 80)"),
    ttl: str | None = typer.Option(None, "--ttl", help="every entry expires after e.g. 7d (default: feed's)"),
    tlp: str = typer.Option("", "--tlp", help="marking: clear | green | amber | amber+strict | red"),
    column: str = typer.Option("", "--column", help="csv: the value column (default: found by name)"),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="store the valid entries, list the rest"),
    dry_run: bool = typer.Option(False, "--dry-run", help="report what would change; change nothing"),
    fmt: Output = Format.table,
) -> None:
    """Import indicators from a file, strictly: one invalid entry refuses the whole file unless
    --skip-invalid. One import is one transaction and one push per scope."""
    try:
        data = read_path(file)
    except (FetchError, FeedFormatError) as exc:
        raise CliError(str(exc)) from None
    if file.is_dir() and fmt_in == "auto":
        fmt_in = "misp"
    options = intel_pb2.ImportOptions(
        format=fmt_in, scope=scope, source=source, tlp=tlp, column=column, skip_invalid=skip_invalid,
        dry_run=dry_run, filename=file.name, has_ttl=ttl is not None,
        ttl_seconds=0 if ttl is not None and ttl.strip() == "never" else parse_ttl_seconds(ttl, "--ttl"),
    )
    if confidence is not None:
        options.confidence, options.has_confidence = confidence, True
    show_bar = fmt is not Format.json and len(data) >= PROGRESS_FROM and sys.stderr.isatty()
    if show_bar:
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True, console=Console(stderr=True)) as progress:
            result = call(ctx, "ImportIocs", _chunks(options, data, progress), service="IntelService",
                          timeout=IMPORT_TIMEOUT)
    else:
        result = call(ctx, "ImportIocs", _chunks(options, data, None), service="IntelService",
                      timeout=IMPORT_TIMEOUT)
    if fmt is Format.json:
        output.print_json(result)
        return
    print_result(result)


def print_result(result: intel_pb2.ImportResult) -> None:
    con = output.console()
    verb = "would import" if result.dry_run else "imported"
    con.print(
        f"{verb} {result.entries} indicator{'s' if result.entries != 1 else ''} into "
        f"{output.esc(result.scope)} as {output.esc(result.source)}: {result.new} new, "
        f"{result.refreshed} refreshed, "
        f"{result.unchanged} unchanged, {result.removed} removed; {result.invalid} invalid, "
        f"{result.unsupported} unsupported, {result.refused} refused by the guard"
        + (f"; {result.urls} URLs" if result.urls else "")
        + (f" (seq {', '.join(map(str, result.seqs))})" if result.seqs else "")
    )
    if result.problems:
        t = output.table("where", "kind", "reason")
        for problem in result.problems[:PROBLEMS_SHOWN]:
            output.add_row(t, problem.where, problem.kind, problem.reason)
        con.print(t)
        hidden = len(result.problems) - PROBLEMS_SHOWN
        if hidden > 0:
            con.print(f"... and {hidden} more (-o json lists up to 1,000)")


@app.command("show")
def show(
    ctx: typer.Context,
    value: str = typer.Argument(..., help="the indicator"),
    scope: str = typer.Option("global", "--scope", "-s", help=SCOPE_HELP),
    fmt: Output = Format.table,
) -> None:
    """One indicator and every source's claim on it (confidence, expiry, marking, decayed score)."""
    detail = call(ctx, "ShowIoc", intel_pb2.ShowIocRequest(value=value, scope=scope), service="IntelService")
    if fmt is Format.json:
        output.print_json(detail)
        return
    info, con = detail.info, output.console()
    con.print(output.details(
        ("value", info.ioc.value), ("scope", info.scope), ("confidence", str(info.ioc.confidence)),
        ("source", info.ioc.source), ("expires", output.when(info.ioc.expires_at_ms, never="never")),
        ("added", output.relative(info.created_at_ms)), ("seq", str(info.seq)),
    ))
    t = output.table("source", "confidence", "score", "expires", "tlp", "last seen")
    for c in detail.claims:
        output.add_row(t, c.source, str(c.confidence), f"{c.score:g}" if c.decays else "-",
                       output.relative(c.expires_at_ms), c.tlp or "-", output.relative(c.last_seen_ms))
    con.print(t)


@app.command("urls")
def urls(
    ctx: typer.Context,
    scope: str = typer.Option("", "--scope", "-s", help=SCOPE_HELP + " (default: all scopes)"),
    limit: int = typer.Option(1000, "--limit", min=1, max=10_000, help="newest first"),
    fmt: Output = Format.table,
) -> None:
    """URL indicators from imports and feeds, kept for reporting: gateways block the host only
    when it is not a popular or shared one."""
    reply = call(ctx, "ListUrls", intel_pb2.ListUrlsRequest(scope=scope, limit=limit), service="IntelService")
    if fmt is Format.json:
        output.print_json(reply.urls)
        return
    t = output.table("url", "host blocked", "source", "scope", "last seen")
    for u in reply.urls:
        output.add_row(t, u.url, output.yes_no(u.host_blocked), u.source, u.scope,
                       output.relative(u.last_seen_ms))
    output.console().print(t)


@app.command("export")
def export(
    ctx: typer.Context,
    scope: str = typer.Option("global", "--scope", "-s", help=SCOPE_HELP),
    fmt_out: str = typer.Option("stix", "--format", help="stix (STIX 2.1 bundle) | csv | plain"),
    tlp: list[str] = typer.Option([], "--tlp", help="TLP levels to export, repeatable (default: clear, "
                                  "green; 'unmarked' adds indicators no source marked)"),
    out: Path | None = typer.Option(None, "--out", help="write to FILE (default: standard output)"),
) -> None:
    """Export a scope's indicators; only TLP:CLEAR and TLP:GREEN ones by default. Names no tenant."""
    request = intel_pb2.ExportIocsRequest(scope=scope, format=fmt_out, tlp=tlp)
    parts: list[bytes] = []
    count = 0
    for chunk in stream(ctx, "ExportIocs", request, service="IntelService"):
        parts.append(chunk.data)
        count = chunk.count or count
    data = b"".join(parts)
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror or exc}") from None
    output.console().print(f"exported {count} indicator{'s' if count != 1 else ''} to {output.esc(out)}")
