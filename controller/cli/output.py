"""How msspctl prints: Rich tables for people, canonical protobuf JSON for scripts."""

from __future__ import annotations

import enum
import json
import os
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mssp.v1 import common_pb2

PIPE_WIDTH = 240


class Format(enum.StrEnum):
    table = "table"
    json = "json"


Output = Annotated[
    Format, typer.Option("--output", "-o", case_sensitive=False, help="table for people, json for scripts")
]


def console() -> Console:
    """A fresh console each time so output follows whatever sys.stdout is now (tests swap it)."""
    # Piped into grep or a log, a table must not fold cells at a guessed 80 columns.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width)


def to_dict(msg: Message) -> dict[str, Any]:
    """The proto3 JSON mapping with field names as in the .proto and every field present."""
    return MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def print_json(data: Message | Iterable[Message] | dict[str, Any]) -> None:
    if isinstance(data, Message):
        obj: Any = to_dict(data)
    elif isinstance(data, dict):
        obj = data
    else:
        obj = [to_dict(m) for m in data]
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def plain(text: str) -> None:
    """Print text that must reach the terminal verbatim (YAML, tokens): no markup, no wrapping."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def esc(value: object) -> str:
    """User data inside a markup string."""
    return escape(str(value))


def table(*columns: str, title: str | None = None) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        t.add_column(column, overflow="fold")
    return t


def versions(v: common_pb2.Versions) -> str:
    return f"t{v.tenant_seq}/g{v.global_seq}"


def yes_no(flag: bool) -> Text:
    return Text("yes", style="green") if flag else Text("no", style="red")


def add_row(t: Table, *cells: str | Text) -> None:
    """Cells are data, never markup: a '[' in a tenant name or an error must print as itself."""
    t.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))


def iso(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def relative(ms: int, *, never: str = "never", now_ms: int | None = None) -> str:
    """'12s ago' / 'in 3h' — what an operator scanning a table wants; 0 means the event never happened."""
    if not ms:
        return never
    now = time.time() * 1000 if now_ms is None else now_ms
    delta = (now - ms) / 1000
    span = _span(abs(delta))
    if span == "0s":
        return "just now"
    return f"{span} ago" if delta > 0 else f"in {span}"


def when(ms: int, *, never: str = "never") -> str:
    """ISO time plus the relative one, for detail views."""
    return f"{iso(ms)} ({relative(ms)})" if ms else never


def _span(seconds: float) -> str:
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def enum_name(enum_type: Any, value: int, prefix: str) -> str:
    """IOC_TYPE_DOMAIN -> domain."""
    return enum_type.Name(value).removeprefix(prefix).lower()


def details(*rows: tuple[str, str | Text]) -> Table:
    """A two-column key/value view for `show` commands."""
    t = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for key, value in rows:
        add_row(t, key, value)
    return t
