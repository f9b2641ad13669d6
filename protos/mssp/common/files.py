"""Writing files that must survive a power cut whole, and secrets that only their owner may read.

One implementation for controller and agent: a temp file beside the target (0600 until renamed),
fsync, os.replace, then fsync of the directory so the rename itself is durable. A crash mid-write
leaves the old file (or none), never a torn one; a failed write (ENOSPC) leaves no temp file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a rename, create or unlink in `directory` durable (the entry lives in the directory)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644, *, sync_dir: bool = True) -> None:
    """Replace `path` whole or not at all (see the module docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def write_private(path: Path, data: bytes) -> None:
    """A secret (key, credentials, token): 0600 from creation on, never readable by others."""
    write_atomic(path, data, 0o600)
