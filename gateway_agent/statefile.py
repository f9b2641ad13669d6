"""Persisted desired state: a snapshot file plus an append-only journal of deltas.

A restart without the controller rebuilds the last applied state from here and keeps enforcing
it (fail-static). Deltas are appended rather than rewriting the snapshot, so a one-IOC change
costs one small write even when the state holds a million indicators.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from gateway_agent.state import DesiredState
from mssp.v1 import push_pb2

_LEN = struct.Struct(">I")
COMPACT_AFTER = 1000  # journal records before the snapshot is rewritten


class StateFileError(Exception):
    pass


def _write_records(path: Path, pushes: list[push_pb2.Push]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        for push in pushes:
            data = push.SerializeToString()
            fh.write(_LEN.pack(len(data)) + data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_records(path: Path, *, tolerate_torn_tail: bool) -> list[push_pb2.Push]:
    if not path.exists():
        return []
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        if pos + _LEN.size > len(data):
            break
        (size,) = _LEN.unpack_from(data, pos)
        end = pos + _LEN.size + size
        if end > len(data):
            break
        push = push_pb2.Push()
        push.ParseFromString(data[pos + _LEN.size : end])
        out.append(push)
        pos = end
    if pos != len(data) and not tolerate_torn_tail:
        raise StateFileError(f"{path} is truncated")
    return out


class StateFile:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.snapshot_path = directory / "applied.snapshot"
        self.journal_path = directory / "applied.journal"
        self._journal_records = 0

    def load(self, tenant_channel: str) -> DesiredState | None:
        """Rebuild the state; a torn last journal record (power loss mid-append) is dropped."""
        snapshot = _read_records(self.snapshot_path, tolerate_torn_tail=False)
        if not snapshot:
            return None
        state = DesiredState(tenant_channel)
        for push in snapshot:
            state.apply(push)
        journal = _read_records(self.journal_path, tolerate_torn_tail=True)
        for push in journal:
            state.apply(push)
        self._journal_records = len(journal)
        return state

    def save_full(self, state: DesiredState) -> None:
        _write_records(self.snapshot_path, state.snapshot_pushes())
        self.journal_path.unlink(missing_ok=True)
        self._journal_records = 0

    def append(self, state: DesiredState, push: push_pb2.Push) -> None:
        if self._journal_records >= COMPACT_AFTER or not self.snapshot_path.exists():
            self.save_full(state)
            return
        data = push.SerializeToString()
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as fh:
            fh.write(_LEN.pack(len(data)) + data)
            fh.flush()
            os.fsync(fh.fileno())
        self._journal_records += 1
