"""A bounded on-disk outbox for telemetry batches, in the agent's state dir.

Every batch goes through here before it is published, so a broker outage, an agent restart or a
power cut loses nothing that fits. One file per batch, named by its seq so a directory listing is
the replay order. Files are written to a temp name, fsynced and renamed, so a crash leaves either
the whole batch or none of it; a checksum catches what the flash corrupts later. When full, the
oldest batches go first (the newest are worth more) and the drops are counted, persistently, so
the controller learns about the gap from the agent's health.

Each stored batch also carries a random nonce, made when it is spooled and kept with it: the
publisher's message id is "<gateway_id>:<seq>:<nonce>", so a replay of the batch has the same id (the
broker drops the copy) while no other gateway can guess the id and pre-empt the batch in the
broker's per-stream duplicate window. Files from before the nonce (magic MSP1) get one derived from
their payload: stable across replays, and unknown to anyone who has not seen the batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import struct
import zlib
from bisect import insort
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mssp.common.files import write_atomic

log = logging.getLogger("mssp.agent.telemetry")

DEFAULT_MAX_BATCHES = 2880  # a day at the default 30 s interval
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
_SUFFIX = ".batch"
NONCE_BYTES = 16
_MAGIC = b"MSP2"
_HEADER = struct.Struct(f">4sI{NONCE_BYTES}s")  # magic, crc32 of nonce + payload, nonce
_MAGIC_V1 = b"MSP1"
_HEADER_V1 = struct.Struct(">4sI")  # magic, crc32 of the payload
_DROPS_FILE = "drops"


@dataclass(frozen=True)
class Spooled:
    """One stored batch: its payload and the nonce that makes its message id unguessable."""

    seq: int
    payload: bytes
    nonce: str  # hex


class TelemetrySpool:
    def __init__(
        self,
        directory: Path,
        *,
        max_batches: int = DEFAULT_MAX_BATCHES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if max_batches < 1 or max_bytes < 1:
            raise ValueError("spool bounds must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.max_batches = max_batches
        self.max_bytes = max_bytes
        self.corrupt = 0
        self._sizes: dict[int, int] = {}
        self._order: list[int] = []
        self._bytes = 0
        self.drops = self._read_drops()
        self._scan()

    # ---- state -----------------------------------------------------------------------------

    def _scan(self) -> None:
        for entry in os.scandir(self.directory):
            name = entry.name
            if name.endswith(".tmp"):  # a write the crash interrupted: never renamed, never counted
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                continue
            if not name.endswith(_SUFFIX):
                continue
            try:
                seq = int(name[: -len(_SUFFIX)])
            except ValueError:
                continue
            size = entry.stat().st_size
            self._sizes[seq] = size
            self._bytes += size
        self._order = sorted(self._sizes)

    def _read_drops(self) -> int:
        try:
            return int((self.directory / _DROPS_FILE).read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _write_drops(self) -> None:
        write_atomic(self.directory / _DROPS_FILE, str(self.drops).encode(), 0o600, sync_dir=False)

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}{_SUFFIX}"

    def __len__(self) -> int:
        return len(self._order)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def seqs(self) -> list[int]:
        return list(self._order)

    # ---- operations ------------------------------------------------------------------------

    def append(self, seq: int, payload: bytes, *, nonce: bytes | None = None) -> int:
        """Store batch `seq` durably with a fresh random nonce (replacing an unsent copy of the same
        seq); returns how many of the oldest batches were dropped to stay within bounds."""
        nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"a spool nonce is {NONCE_BYTES} bytes")
        data = _HEADER.pack(_MAGIC, zlib.crc32(payload, zlib.crc32(nonce)), nonce) + payload
        write_atomic(self._path(seq), data, 0o600)
        old = self._sizes.get(seq)
        if old is None:
            insort(self._order, seq)
        else:
            self._bytes -= old
        self._sizes[seq] = len(data)
        self._bytes += len(data)
        dropped = 0
        while len(self._order) > 1 and (len(self._order) > self.max_batches or self._bytes > self.max_bytes):
            oldest = self._order[0]
            if oldest == seq:
                break
            self._forget(oldest)
            dropped += 1
        if dropped:
            self.drops += dropped
            self._write_drops()
            log.warning("telemetry spool full: dropped %d oldest batches (%d in total)", dropped, self.drops)
        return dropped

    def read(self, seq: int) -> bytes | None:
        """The payload of batch `seq`; None (and the file removed) when it is gone or corrupt."""
        entry = self.read_entry(seq)
        return None if entry is None else entry.payload

    def read_entry(self, seq: int) -> Spooled | None:
        """Batch `seq` with its nonce; None (and the file removed) when it is gone or corrupt."""
        try:
            data = self._path(seq).read_bytes()
        except FileNotFoundError:
            self._drop_index(seq)
            return None
        entry = _decode(seq, data)
        if entry is None:
            self.corrupt += 1
            log.error("telemetry spool: batch %d is corrupt; discarding it", seq)
            self._forget(seq)
        return entry

    def remove(self, seq: int) -> None:
        """The batch is safely with the broker."""
        self._forget(seq)

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        """(seq, payload) oldest first; skips batches that vanished or are corrupt."""
        for seq in list(self._order):
            payload = self.read(seq)
            if payload is not None:
                yield seq, payload

    def _forget(self, seq: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(seq))
        self._drop_index(seq)

    def _drop_index(self, seq: int) -> None:
        size = self._sizes.pop(seq, None)
        if size is not None:
            self._bytes -= size
            self._order.remove(seq)


def _decode(seq: int, data: bytes) -> Spooled | None:
    magic = data[:4]
    if magic == _MAGIC and len(data) >= _HEADER.size:
        _, crc, nonce = _HEADER.unpack_from(data)
        payload = data[_HEADER.size :]
        if zlib.crc32(payload, zlib.crc32(nonce)) == crc:
            return Spooled(seq, payload, nonce.hex())
    elif magic == _MAGIC_V1 and len(data) >= _HEADER_V1.size:
        _, crc = _HEADER_V1.unpack_from(data)
        payload = data[_HEADER_V1.size :]
        if zlib.crc32(payload) == crc:
            return Spooled(seq, payload, hashlib.sha256(payload).digest()[:NONCE_BYTES].hex())
    return None
