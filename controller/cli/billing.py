"""`msspctl billing`: the MSSP's charge export and month close. Every line carries a stable id
(tenant id, period, meter) so a billing system can take re-exports idempotently."""

from __future__ import annotations

import csv
import enum
import sys

import typer

from controller.cli import output
from controller.cli.client import call
from controller.domain.csv_cells import csv_cell
from mssp.v1 import accounts_pb2

SERVICE = "BillingService"
CSV_FIELDS = ("id", "tenant_id", "tenant", "period", "plan", "meter", "description", "quantity",
              "included", "billable", "unit_price", "amount", "currency")

app = typer.Typer(help="Export charges per tenant and close billing months.", no_args_is_help=True)


class ExportFormat(enum.StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


PERIOD = typer.Option(..., "--period", help="UTC month, YYYY-MM")
FORMAT = typer.Option(ExportFormat.table, "--output", "-o", case_sensitive=False,
                      help="table for people, json or csv for a billing system")


def _print(export: accounts_pb2.BillingExport, fmt: ExportFormat, verb: str) -> None:
    if fmt is ExportFormat.json:
        output.print_json(export)
        return
    if fmt is ExportFormat.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(CSV_FIELDS)
        for line in export.lines:
            writer.writerow([csv_cell(getattr(line, f)) for f in CSV_FIELDS])
        for warning in export.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return
    console = output.console()
    t = output.table("tenant", "meter", "quantity", "included", "billable", "unit price", "amount")
    for line in export.lines:
        output.add_row(t, line.tenant, line.meter, line.quantity, line.included, line.billable,
                       line.unit_price, f"{line.amount} {line.currency}")
    console.print(t)
    state = f"closed {output.when(export.closed_at_ms)}" if export.closed else "open (figures as of now)"
    n, tenants = len(export.lines), len({line.tenant_id for line in export.lines})
    console.print(f"{verb} {output.esc(export.period)}: {n} line{'s' if n != 1 else ''} for "
                  f"{tenants} tenant{'s' if tenants != 1 else ''}; {state}")
    for warning in export.warnings:
        console.print(f"[yellow]warning:[/yellow] {output.esc(warning)}")


@app.command("export")
def export(ctx: typer.Context, period: str = PERIOD, fmt: ExportFormat = FORMAT) -> None:
    """One line per tenant and charge: frozen lines for a closed month, figures as of now for an open one."""
    result = call(ctx, "ExportBilling", accounts_pb2.BillingPeriodRef(period=period), service=SERVICE)
    _print(result, fmt, "billing")


@app.command("close")
def close(ctx: typer.Context, period: str = PERIOD, fmt: ExportFormat = FORMAT) -> None:
    """Freeze a finished month with the plans and prices in force; one time only."""
    result = call(ctx, "CloseBillingPeriod", accounts_pb2.BillingPeriodRef(period=period), service=SERVICE)
    _print(result, fmt, "closed")
