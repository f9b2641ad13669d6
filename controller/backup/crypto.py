"""The archive file format: a small header, then AES-256-GCM chunks under a passphrase-derived key.

    header  magic "MSSPBKUP", version, kdf (1 = scrypt), log2(N), r, p, salt[16], nonce prefix[4],
            chunk size (u32 big-endian)
    chunks  ciphertext + 16-byte tag each; every chunk but the last holds exactly `chunk size`
            plaintext bytes, the last holds 0..chunk size (so a file always ends with one)

Each chunk's nonce is the prefix plus its index, and its associated data is the whole header, its
index and a final-chunk flag: a reordered, dropped, duplicated or truncated chunk, an edited
header, or trailing bytes all fail authentication the same way a wrong passphrase does. Streaming
both ways: memory holds one chunk, whatever the database size.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from controller.backup.errors import DAMAGED, BackupError

MAGIC = b"MSSPBKUP"
VERSION = 1
KDF_SCRYPT = 1
CHUNK_SIZE = 1 << 20
TAG = 16
MIN_PASSPHRASE = 12
_HEADER = struct.Struct(">8sBBBBB16s4sI")
_AAD = struct.Struct(">QB")
# scrypt N = 2^15, r = 8: 32 MiB and ~0.1 s per derivation; stored, so it can be raised later.
DEFAULT_LOG2_N, DEFAULT_R, DEFAULT_P = 15, 8, 1
# scrypt needs 128·r·N bytes: a header asking for more is refused before it is run (a crafted
# archive must not take the machine's memory); eight times today's default leaves room to raise it.
MAX_KDF_MEMORY = 256 << 20


def check_passphrase(passphrase: str) -> bytes:
    if len(passphrase) < MIN_PASSPHRASE:
        raise BackupError(f"the passphrase must be at least {MIN_PASSPHRASE} characters long")
    return passphrase.encode("utf-8")


def _derive(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p).derive(passphrase)


class EncryptingWriter:
    """Write plaintext in, chunks out to `out`; close() writes the final chunk (always)."""

    def __init__(self, out: BinaryIO, passphrase: bytes, *, chunk_size: int = CHUNK_SIZE,
                 log2_n: int = DEFAULT_LOG2_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> None:
        salt, prefix = os.urandom(16), os.urandom(4)
        self.header = _HEADER.pack(MAGIC, VERSION, KDF_SCRYPT, log2_n, r, p, salt, prefix, chunk_size)
        self._aead = AESGCM(_derive(passphrase, salt, log2_n, r, p))
        self._prefix = prefix
        self._out = out
        self._chunk_size = chunk_size
        self._buf = bytearray()
        self._index = 0
        self._closed = False
        out.write(self.header)

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("archive already closed")
        self._buf += data
        # Keep the tail back: the final chunk is written by close(), never here.
        while len(self._buf) > self._chunk_size:
            self._emit(bytes(self._buf[: self._chunk_size]), final=False)
            del self._buf[: self._chunk_size]

    def close(self) -> None:
        if not self._closed:
            self._emit(bytes(self._buf), final=True)
            self._buf.clear()
            self._closed = True

    def _emit(self, plain: bytes, *, final: bool) -> None:
        nonce = self._prefix + self._index.to_bytes(8, "big")
        aad = self.header + _AAD.pack(self._index, int(final))
        self._out.write(self._aead.encrypt(nonce, plain, aad))
        self._index += 1


def _read_exact(src: BinaryIO, n: int) -> bytes:
    parts, left = [], n
    while left:
        got = src.read(left)
        if not got:
            break
        parts.append(got)
        left -= len(got)
    return b"".join(parts)


class DecryptingReader:
    """read(n) over the plaintext; every byte handed out was authenticated. Raises BackupError
    (DAMAGED) at the first chunk that does not verify, and at a missing final chunk."""

    def __init__(self, src: BinaryIO, passphrase: bytes) -> None:
        header = _read_exact(src, _HEADER.size)
        if len(header) < len(MAGIC) or header[: len(MAGIC)] != MAGIC:
            raise BackupError("not an msspctl backup archive (no MSSPBKUP header)")
        if len(header) < _HEADER.size:
            raise BackupError(DAMAGED)
        _magic, version, kdf, log2_n, r, p, salt, prefix, chunk_size = _HEADER.unpack(header)
        if version != VERSION or kdf != KDF_SCRYPT:
            raise BackupError(f"archive format {version}/kdf {kdf} is not supported by this msspctl "
                              "(made by a newer version?)")
        if not (10 <= log2_n <= 22 and 1 <= r <= 32 and 1 <= p <= 16 and 1024 <= chunk_size <= 1 << 26):
            raise BackupError(DAMAGED)
        if (need := 128 * r * (1 << log2_n)) > MAX_KDF_MEMORY:
            raise BackupError(f"the archive's key derivation would need {need >> 20} MiB of memory, "
                              f"more than the {MAX_KDF_MEMORY >> 20} MiB this msspctl allows: "
                              "damaged, or not made by msspctl")
        self.header = header
        self._aead = AESGCM(_derive(passphrase, salt, log2_n, r, p))
        self._prefix = prefix
        self._src = src
        self._full = chunk_size + TAG
        self._next = _read_exact(src, self._full)  # one chunk of look-ahead says which is the last
        self._index = 0
        self._plain = b""
        self._pos = 0
        self._done = False

    def _advance(self) -> None:
        cur = self._next
        if len(cur) < TAG:
            raise BackupError(DAMAGED)  # no final chunk: truncated
        self._next = _read_exact(self._src, self._full) if len(cur) == self._full else b""
        final = not self._next
        nonce = self._prefix + self._index.to_bytes(8, "big")
        aad = self.header + _AAD.pack(self._index, int(final))
        try:
            self._plain = self._aead.decrypt(nonce, cur, aad)
        except InvalidTag:
            raise BackupError(DAMAGED) from None
        self._pos = 0
        self._index += 1
        self._done = final

    def read(self, n: int) -> bytes:
        """Up to n bytes; fewer only at the (authenticated) end of the plaintext."""
        out = bytearray()
        while len(out) < n:
            if self._pos == len(self._plain):
                if self._done:
                    break
                self._advance()
                continue
            take = min(n - len(out), len(self._plain) - self._pos)
            out += self._plain[self._pos: self._pos + take]
            self._pos += take
        return bytes(out)

    def at_end(self) -> bool:
        """True once the whole file was read and verified (authenticates the rest if needed)."""
        while self._pos == len(self._plain) and not self._done:
            self._advance()
        return self._done and self._pos == len(self._plain)
