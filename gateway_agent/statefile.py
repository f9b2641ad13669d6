"""Persisted desired state: a snapshot file plus an append-only journal of deltas.

A restart without the controller rebuilds the last applied state from here and keeps enforcing
it (fail-static). Deltas are appended rather than rewriting the snapshot, so a one-IOC change
costs one small write even when the state holds a million indicators.

Crash safety:
* Every record carries a CRC32 over its length and body. A journal whose tail is torn or
  corrupt (power cut mid-append, zero-filled blocks) is cut back at its last good record, so the
  next append never lands behind garbage. Only a tail is cut: a bad record followed by a good,
  newer one (a bit flip mid-file) makes the file unusable, since cutting would roll state back.
* The snapshot is written to a temporary file, fsynced, renamed over the old one and the directory
  is fsynced; the journal is unlinked after that. A crash between the rename and the unlink leaves
  journal records the snapshot already holds: they are skipped by seq.
* A failed append (ENOSPC) is rolled back and followed by a full snapshot; until one is written
  no further record is appended, so the journal never holds a gap.
* Anything else that does not load raises StateFileError: the caller decides (the agent keeps
  what the kernel holds and resyncs).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

from google.protobuf.message import DecodeError

from gateway_agent.errors import AgentError
from gateway_agent.state import DesiredState, Gap, Invalid, Stale
from mssp.common.channels import ALLIANCE_CHANNEL
from mssp.common.files import fsync_dir
from mssp.v1 import push_pb2

log = logging.getLogger("mssp.agent.statefile")

MAGIC = b"MSSPSF2\n"  # files without it are the old format: records without a checksum
_HEAD = struct.Struct(">II")  # body length, crc32(length || body)
_LEGACY_LEN = struct.Struct(">I")
MAX_RECORD = 256 * 1024 * 1024  # a length above this is corruption, not a record
COMPACT_AFTER = 1000  # journal records before the snapshot is rewritten


class StateFileError(AgentError):
    """The state file cannot be loaded or written; what is on disk is left consistent."""


def _record(push: push_pb2.Push) -> bytes:
    data = push.SerializeToString()
    size = _LEGACY_LEN.pack(len(data))
    return _HEAD.pack(len(data), zlib.crc32(data, zlib.crc32(size))) + data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_records(path: Path, pushes: list[push_pb2.Push]) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, MAGIC + b"".join(_record(p) for p in pushes))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # give the space back (ENOSPC)
        raise
    fsync_dir(path.parent)


def _parse(body: bytes) -> push_pb2.Push | None:
    push = push_pb2.Push()
    try:
        push.ParseFromString(body)
    except DecodeError:
        return None
    return push


def _record_at(data: bytes, pos: int) -> tuple[push_pb2.Push, int] | None:
    """The checksummed record starting at `pos` and its end, or None when there is none whole."""
    if pos + _HEAD.size > len(data):
        return None
    size, crc = _HEAD.unpack_from(data, pos)
    end = pos + _HEAD.size + size
    if size == 0 or size > MAX_RECORD or end > len(data):
        return None
    body = data[pos + _HEAD.size : end]
    if zlib.crc32(body, zlib.crc32(data[pos : pos + 4])) != crc:
        return None
    push = _parse(body)
    return None if push is None else (push, end)


def _scan(data: bytes) -> tuple[list[push_pb2.Push], int, bool]:
    """Records from the start, the length of the good prefix, and whether the file is legacy."""
    if data.startswith(MAGIC):
        out, pos = [], len(MAGIC)
        while (found := _record_at(data, pos)) is not None:
            out.append(found[0])
            pos = found[1]
        return out, pos, False
    if MAGIC.startswith(data):  # empty, or the header itself was torn
        return [], 0, False
    out, pos = [], 0
    while pos + _LEGACY_LEN.size <= len(data):
        (size,) = _LEGACY_LEN.unpack_from(data, pos)
        end = pos + _LEGACY_LEN.size + size
        if end > len(data):
            break
        push = _parse(data[pos + _LEGACY_LEN.size : end])
        if push is None:
            break
        out.append(push)
        pos = end
    return out, pos, True


def _record_after(data: bytes, bad: int, state: DesiredState) -> push_pb2.Push | None:
    """A record that follows the bad one at `bad`: a later offset holding a whole record (length in
    bounds, good CRC, a body that parses) for one of `state`'s channels with a seq newer than
    `state` holds. A torn or corrupt tail has none; a bad record in the middle of the journal has
    one (the record written after it), and cutting there would roll enforcement back."""
    pos = bad + 1
    while pos + _HEAD.size < len(data):
        room = len(data) - pos - _HEAD.size  # the longest body that still fits
        zeros = 4 - (room.bit_length() + 7) // 8  # so the length's leading bytes must be zero
        if zeros > 0 and (pos := data.find(bytes(zeros), pos)) < 0:
            return None
        found = _record_at(data, pos)
        if found is not None:
            push = found[0]
            if push.channel in state.channel_names and push.seq > state.channels[push.channel].seq:
                return push
        pos += 1
    return None


class StateFile:
    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fsync_dir(directory.parent)  # the state directory's own entry must survive a power cut
        self.directory = directory
        self.snapshot_path = directory / "applied.snapshot"
        self.journal_path = directory / "applied.journal"
        self._journal_records = 0
        self._journal_size = 0  # bytes of good records; an append writes at this offset
        # Until load() or save_full() has vouched for the journal, the next change is a full write.
        self._needs_full = True

    def load(self, tenant_channel: str, *, repair: bool = False) -> DesiredState | None:
        """Rebuild the state from what a crash leaves: a torn or corrupt journal tail is ignored,
        journal records the snapshot already holds are skipped; StateFileError when that is not
        enough. `repair` (the agent, the only writer) also cuts the tail off and rewrites old or
        stale files; without it nothing on disk changes (`mssp-agent status` beside a running agent)."""
        self._needs_full = True
        try:
            return self._load(tenant_channel, repair)
        except OSError as exc:
            raise StateFileError(f"{self.directory}: {exc}") from exc

    def _load(self, tenant_channel: str, repair: bool) -> DesiredState | None:
        if not self.snapshot_path.exists():
            return None
        raw = self.snapshot_path.read_bytes()
        snapshot, good, legacy = _scan(raw)
        if good != len(raw) or not snapshot:
            raise StateFileError(f"{self.snapshot_path} is corrupt at byte {good} of {len(raw)}")
        state = DesiredState(tenant_channel)
        try:
            for push in snapshot:
                if push.WhichOneof("body") != "snapshot":
                    raise Invalid(f"{push.channel}#{push.seq} is not a snapshot")
                if push.channel not in state.channel_names:
                    state.follow(push.channel)  # an optional channel it followed when it saved
                state.apply(push)
        except (Gap, Stale, Invalid) as exc:
            raise StateFileError(f"{self.snapshot_path}: {exc}") from exc
        base = {name: ch.seq for name, ch in state.channels.items()}
        data = self.journal_path.read_bytes() if self.journal_path.exists() else b""
        journal, good, journal_legacy = _scan(data)
        skipped = 0
        for push in journal:
            if push.channel not in state.channel_names and push.channel == ALLIANCE_CHANNEL:
                state.follow(push.channel)  # joined after the snapshot was written (an older agent's file)
            if push.channel in base and push.seq <= base[push.channel]:
                skipped += 1  # written before the snapshot that already holds it (crash before unlink)
                continue
            try:
                state.apply(push)
            except (Gap, Stale, Invalid) as exc:
                # A hole in the journal: the kernel held more than this file; re-enforcing the
                # older state would roll enforcement back.
                raise StateFileError(f"{self.journal_path}: {exc}") from exc
        if good != len(data):
            # Also when the magic is damaged (the file then reads as legacy): look for our records.
            if (later := _record_after(data, good, state)) is not None:
                raise StateFileError(f"{self.journal_path} is corrupt at byte {good} of {len(data)} and "
                                     f"{later.channel}#{later.seq} follows; cutting there would roll back")
            log.warning("%s: ignoring %d bytes after the last good record (torn or corrupt tail)",
                        self.journal_path, len(data) - good)
        if not repair:
            return state  # _needs_full stays set: this instance has not vouched for the journal
        if good != len(data):
            try:
                self._truncate_journal(good)
            except OSError as exc:
                log.warning("%s: cannot cut the tail off (%s); the next change writes it whole",
                            self.journal_path, exc)
                return state
        self._journal_records = len(journal)
        self._journal_size = good
        self._needs_full = False
        if legacy or (journal and journal_legacy) or skipped:
            try:  # rewrite in the checksummed format / drop the stale records
                self.save_full(state)
            except StateFileError as exc:
                log.warning("%s (the next change writes a full snapshot)", exc)
        return state

    def _truncate_journal(self, size: int) -> None:
        fd = os.open(self.journal_path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def save_full(self, state: DesiredState) -> None:
        """Replace the snapshot with `state` and drop the journal; StateFileError leaves the old
        files in place and makes the next change a full write again."""
        self._needs_full = True
        try:
            _write_records(self.snapshot_path, state.snapshot_pushes())
            if self.journal_path.exists():
                self.journal_path.unlink()
                fsync_dir(self.directory)
        except OSError as exc:
            raise StateFileError(f"cannot write {self.snapshot_path}: {exc}") from exc
        self._journal_records = 0
        self._journal_size = 0
        self._needs_full = False

    def append(self, state: DesiredState, push: push_pb2.Push) -> None:
        """Journal one applied delta (`state` already includes it)."""
        if self._needs_full or self._journal_records >= COMPACT_AFTER or not self.snapshot_path.exists():
            self.save_full(state)
            return
        record = _record(push)
        creating = self._journal_size == 0
        try:
            fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as exc:
            self._save_after_failed_append(state, exc)
            return
        try:
            os.lseek(fd, self._journal_size, os.SEEK_SET)
            _write_all(fd, MAGIC + record if creating else record)
            os.fsync(fd)
            if creating:
                fsync_dir(self.directory)
        except OSError as exc:
            try:
                os.ftruncate(fd, self._journal_size)  # no half record for the next append to follow
            except OSError:
                pass  # _needs_full is set below: nothing is appended behind it
            os.close(fd)
            self._save_after_failed_append(state, exc)
            return
        os.close(fd)
        if creating:
            self._journal_size = len(MAGIC)
        self._journal_size += len(record)
        self._journal_records += 1

    def _save_after_failed_append(self, state: DesiredState, exc: OSError) -> None:
        """The record is not on disk, the kernel has it: only a full snapshot avoids a gap."""
        log.warning("%s: append failed (%s); writing a full snapshot", self.journal_path, exc)
        self._needs_full = True
        try:
            self.save_full(state)
        except StateFileError as full:
            raise StateFileError(f"journal append failed ({exc}) and {full}") from exc
