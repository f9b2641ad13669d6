"""The plaintext inside an archive: frames of (u32 header length, JSON header, body of header["size"]
bytes), in this order:

    manifest   format, when, where from, the file list and the tables with their row counts
    file       one data-dir file per frame (path, mode); body: its bytes
    database   dialect, Alembic revision, every table's columns and which of them are binary
    rows       up to ROWS_PER_FRAME rows of one table as JSON lines; as many frames as needed
    end        nothing follows; a reader that never sees it has a damaged archive

Bodies are copied in pieces, never held whole (a feed file or a rows frame stays small anyway).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

from controller.backup.errors import DAMAGED, BackupError

FORMAT = "mssp-controller-backup/1"
ROWS_PER_FRAME = 1000
COPY = 1 << 20
_LEN = struct.Struct(">I")
MAX_HEADER = 16 << 20  # the manifest lists files and tables: large, not unbounded


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...


class Source(Protocol):
    def read(self, n: int) -> bytes: ...


def write_frame(sink: Sink, header: dict[str, Any], body: bytes = b"") -> None:
    head = json.dumps({**header, "size": len(body)}, separators=(",", ":")).encode()
    sink.write(_LEN.pack(len(head)) + head)
    if body:
        sink.write(body)


def write_file_frame(sink: Sink, header: dict[str, Any], src: BinaryIO, size: int) -> None:
    """A frame whose body is `size` bytes of `src`, copied in pieces."""
    head = json.dumps({**header, "size": size}, separators=(",", ":")).encode()
    sink.write(_LEN.pack(len(head)) + head)
    left = size
    while left:
        piece = src.read(min(COPY, left))
        if not piece:
            raise BackupError(f"{header.get('path')}: the file shrank while it was being backed up")
        sink.write(piece)
        left -= len(piece)


def _exact(src: Source, n: int) -> bytes:
    data = src.read(n)
    if len(data) != n:
        raise BackupError(DAMAGED)
    return data


def read_header(src: Source) -> dict[str, Any]:
    (length,) = _LEN.unpack(_exact(src, _LEN.size))
    if length > MAX_HEADER:
        raise BackupError(DAMAGED)
    try:
        header = json.loads(_exact(src, length))
    except ValueError:
        raise BackupError(DAMAGED) from None
    if not isinstance(header, dict) or not isinstance(header.get("kind"), str) \
            or not isinstance(header.get("size"), int) or header["size"] < 0:
        raise BackupError(DAMAGED)
    return header


def read_body(src: Source, header: dict[str, Any]) -> bytes:
    return _exact(src, header["size"])


def copy_body(src: Source, header: dict[str, Any], write: Callable[[bytes], object]) -> None:
    left = header["size"]
    while left:
        piece = _exact(src, min(COPY, left))
        write(piece)
        left -= len(piece)
