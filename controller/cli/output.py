"""How msspctl prints: Rich tables for people, canonical protobuf JSON for scripts.

Everything msspctl writes to stdout goes through this module, and all of it is made inert first
(mssp.common.text): a gateway controls last_error, agent_version, telemetry hosts and dimensions,
and a terminal obeys the escape sequences it prints. Rich alone strips only a few control codes.
"""

from __future__ import annotations

import enum
import json
import os
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mssp.common.clock import now_ms as clock_ms
from mssp.common.text import clean_line, clean_text, has_unsafe
from mssp.v1 import common_pb2

PIPE_WIDTH = 240


class Format(enum.StrEnum):
    table = "table"
    json = "json"


Output = Annotated[
    Format, typer.Option("--output", "-o", case_sensitive=False, help="table for people, json for scripts")
]


class SafeConsole(Console):
    """A Console whose print() makes str and Text arguments inert (tables are cleaned cell by cell in
    add_row). Markup in a str argument is the caller's; data inside markup goes through esc()."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(_inert(o) for o in objects), **kwargs)


def _inert(obj: Any) -> Any:
    if isinstance(obj, str):
        return clean_text(obj)
    if isinstance(obj, Text):
        return safe_text(obj)
    return obj


def safe_text(text: Text) -> Text:
    """A Text without terminal controls (its spans are dropped only when something was escaped)."""
    if not has_unsafe(text.plain):
        return text
    return Text(clean_line(text.plain), style=text.style, justify=text.justify, overflow=text.overflow)


def console() -> Console:
    """A fresh console each time so output follows whatever sys.stdout is now (tests swap it)."""
    # Piped into grep or a log, a table must not fold cells at a guessed 80 columns.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    return SafeConsole(file=sys.stdout, highlight=False, soft_wrap=True, width=width)


def to_dict(msg: Message) -> dict[str, Any]:
    """The proto3 JSON mapping with field names as in the .proto and every field present, with one
    type per field: 64-bit integers as numbers (proto3 JSON writes them as strings) and enums as
    the lower-case words the tables show (``ipv4``, not ``IOC_TYPE_IPV4``)."""
    data = MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return _typed(msg.DESCRIPTOR, data)


_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}


def _enum_word(enum: Any, name: Any) -> Any:
    """IOC_TYPE_IPV4 -> ipv4: the enum's UPPER_SNAKE type name is the prefix its values carry."""
    if not isinstance(name, str):
        return name
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
    return name.removeprefix(prefix).lower()


def _typed(descriptor: Any, data: dict[str, Any]) -> dict[str, Any]:
    for field in descriptor.fields:
        if field.name not in data:
            continue
        value = data[field.name]
        many = isinstance(value, list)
        items = value if many else [value]
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                continue  # maps keep the standard mapping
            items = [_typed(field.message_type, v) if isinstance(v, dict) else v for v in items]
        elif field.type in _INT64:
            items = [int(v) if isinstance(v, str) and v.lstrip("-").isdigit() else v for v in items]
        elif field.enum_type is not None:
            items = [_enum_word(field.enum_type, v) for v in items]
        data[field.name] = items if many else items[0]
    return data


def print_json(data: Message | Iterable[Message] | dict[str, Any]) -> None:
    if isinstance(data, Message):
        obj: Any = to_dict(data)
    elif isinstance(data, dict):
        obj = data
    else:
        obj = [to_dict(m) for m in data]
    # ensure_ascii escapes every C0 and non-ASCII character (C1, bidi); DEL is ASCII: escape it too.
    sys.stdout.write(json.dumps(obj, indent=2).replace("\x7f", "\\u007f") + "\n")


def plain(text: str) -> None:
    """Print text that must reach the terminal as is (YAML, tokens): no markup, no wrapping; only
    terminal controls are escaped (newlines and tabs stay)."""
    text = clean_text(text)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def esc(value: object) -> str:
    """User data inside a markup string: markup-escaped and made inert."""
    return escape(clean_line(str(value)))


def table(*columns: str, title: str | None = None) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        t.add_column(column, overflow="fold")
    return t


def versions(v: common_pb2.Versions) -> str:
    """t<tenant>/g<global>, and /a<alliance> for a gateway that follows the alliance channel."""
    return f"t{v.tenant_seq}/g{v.global_seq}" + (f"/a{v.alliance_seq}" if v.alliance_seq else "")


def yes_no(flag: bool) -> Text:
    return Text("yes", style="green") if flag else Text("no", style="red")


def add_row(t: Table, *cells: str | Text) -> None:
    """Cells are data, never markup: a '[' in a tenant name or an error must print as itself, and an
    escape sequence in it prints as `\\x1b[...`, never as a command to the terminal."""
    t.add_row(*(Text(clean_line(c)) if isinstance(c, str) else safe_text(c) for c in cells))


def iso(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def relative(ms: int, *, never: str = "never", now_ms: int | None = None) -> str:
    """'12s ago' / 'in 3h' — what an operator scanning a table wants; 0 means the event never happened."""
    if not ms:
        return never
    now = clock_ms() if now_ms is None else now_ms
    delta = (now - ms) / 1000
    text = span(abs(delta))
    if text == "0s":
        return "just now"
    return f"{text} ago" if delta > 0 else f"in {text}"


def when(ms: int, *, never: str = "never") -> str:
    """ISO time plus the relative one, for detail views."""
    return f"{iso(ms)} ({relative(ms)})" if ms else never


def span(seconds: float) -> str:
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
