"""The backup archive's file format (controller/backup/crypto.py, frames.py): round trips of every
size class, and every kind of damage (wrong passphrase, truncation, edits, reordering, trailing
bytes) refused with the same message, before any plaintext is handed out."""

from __future__ import annotations

import io
import os
import struct

import pytest

from controller.backup.crypto import (
    TAG,
    DecryptingReader,
    EncryptingWriter,
    check_passphrase,
)
from controller.backup.errors import DAMAGED, BackupError
from controller.backup.frames import FORMAT, copy_body, read_body, read_header, write_frame

PASS = b"correct horse battery staple"
CHUNK = 1024
HEADER = 37  # magic 8, version/kdf/N/r/p 5, salt 16, nonce prefix 4, chunk size 4


def seal(plain: bytes, passphrase: bytes = PASS, chunk: int = CHUNK) -> bytes:
    out = io.BytesIO()
    writer = EncryptingWriter(out, passphrase, chunk_size=chunk, log2_n=10)
    for i in range(0, len(plain), 700):  # writes that straddle chunk boundaries
        writer.write(plain[i: i + 700])
    writer.close()
    return out.getvalue()


def unseal(blob: bytes, passphrase: bytes = PASS) -> bytes:
    reader = DecryptingReader(io.BytesIO(blob), passphrase)
    out = bytearray()
    while piece := reader.read(333):
        out += piece
    assert reader.at_end()
    return bytes(out)


def chunks(blob: bytes, chunk: int = CHUNK) -> list[bytes]:
    body, size = blob[HEADER:], chunk + TAG
    return [body[i: i + size] for i in range(0, len(body), size)]


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 17])
def test_round_trip_of_every_size(size: int) -> None:
    plain = os.urandom(size)
    blob = seal(plain)
    assert blob.startswith(b"MSSPBKUP")
    assert size < 16 or plain[:16] not in blob  # (a byte or two may occur in random ciphertext)
    assert len(chunks(blob)) == max(1, -(-size // CHUNK))  # always a final chunk: 0..CHUNK bytes
    assert unseal(blob) == plain


def test_two_archives_of_the_same_data_share_nothing() -> None:
    plain = b"x" * 3000
    a, b = seal(plain), seal(plain)
    assert a[8 + 5: HEADER] != b[8 + 5: HEADER]  # fresh salt and nonce prefix
    assert a[HEADER:] != b[HEADER:]


def test_wrong_passphrase_is_refused_before_any_plaintext() -> None:
    blob = seal(b"secret key material" * 100)
    with pytest.raises(BackupError, match=DAMAGED):
        DecryptingReader(io.BytesIO(blob), b"not the passphrase at all").read(1)


def damaged_variants(blob: bytes) -> dict[str, bytes]:
    parts = chunks(blob)
    assert len(parts) >= 3
    flipped = bytearray(blob)
    flipped[HEADER + CHUNK // 2] ^= 0x01
    header_edit = bytearray(blob)
    header_edit[20] ^= 0x80  # inside the salt: authenticated through every chunk's associated data
    return {
        "cut mid-chunk": blob[:-5],
        "cut at a chunk boundary (final chunk dropped)": blob[:HEADER] + b"".join(parts[:-1]),
        "only the header": blob[:HEADER],
        "a flipped ciphertext bit": bytes(flipped),
        "an edited header": bytes(header_edit),
        "two chunks swapped": blob[:HEADER] + parts[1] + parts[0] + b"".join(parts[2:]),
        "a chunk repeated": blob[:HEADER] + parts[0] + b"".join(parts),
        "trailing bytes": blob + b"\x00" * 40,
        "a full extra chunk": blob + parts[1],
    }


@pytest.mark.parametrize("case", list(damaged_variants(seal(os.urandom(4 * CHUNK + 100)))))
def test_damage_of_any_kind_is_detected(case: str) -> None:
    blob = damaged_variants(seal(os.urandom(4 * CHUNK + 100)))[case]
    with pytest.raises(BackupError, match=DAMAGED):
        unseal(blob)


def test_a_file_that_is_no_archive_says_so() -> None:
    with pytest.raises(BackupError, match="not an msspctl backup archive"):
        DecryptingReader(io.BytesIO(b"PK\x03\x04 some zip file"), PASS)


def test_a_newer_format_version_is_named() -> None:
    blob = bytearray(seal(b"data"))
    blob[8] = 2
    with pytest.raises(BackupError, match="not supported by this msspctl"):
        DecryptingReader(io.BytesIO(bytes(blob)), PASS)


def test_absurd_kdf_parameters_are_refused_without_running_them() -> None:
    blob = bytearray(seal(b"data"))
    blob[10] = 40  # log2(N) = 40: 2^40 scrypt iterations would never finish
    with pytest.raises(BackupError, match=DAMAGED):
        DecryptingReader(io.BytesIO(bytes(blob)), PASS)
    blob[10], blob[11] = 22, 8  # in range, but 128·r·N = 4 GiB of memory
    with pytest.raises(BackupError, match=r"would need 4096 MiB of memory, more than the 256 MiB"):
        DecryptingReader(io.BytesIO(bytes(blob)), PASS)
    blob[10], blob[11] = 18, 8  # 256 MiB: the most allowed; a wrong header byte, so no key fits
    with pytest.raises(BackupError, match=DAMAGED):
        DecryptingReader(io.BytesIO(bytes(blob)), PASS).read(1)


@pytest.mark.parametrize("passphrase", ["", "short", "elevenchars"])
def test_short_passphrases_are_refused(passphrase: str) -> None:
    with pytest.raises(BackupError, match="at least 12 characters"):
        check_passphrase(passphrase)
    assert check_passphrase("twelve chars") == b"twelve chars"


def test_frames_round_trip_through_the_encryption() -> None:
    out = io.BytesIO()
    writer = EncryptingWriter(out, PASS, chunk_size=CHUNK, log2_n=10)
    big = os.urandom(3 * CHUNK + 5)
    write_frame(writer, {"kind": "manifest", "format": FORMAT})
    write_frame(writer, {"kind": "file", "path": "pki/ca.key"}, big)
    write_frame(writer, {"kind": "end"})
    writer.close()
    reader = DecryptingReader(io.BytesIO(out.getvalue()), PASS)
    assert read_header(reader) == {"kind": "manifest", "format": FORMAT, "size": 0}
    header = read_header(reader)
    got = bytearray()
    copy_body(reader, header, got.extend)
    assert bytes(got) == big
    end = read_header(reader)
    assert end["kind"] == "end" and read_body(reader, end) == b"" and reader.at_end()


def test_a_frame_header_of_absurd_length_is_damage() -> None:
    out = io.BytesIO()
    writer = EncryptingWriter(out, PASS, chunk_size=CHUNK, log2_n=10)
    writer.write(struct.pack(">I", 1 << 30) + b"{}")
    writer.close()
    with pytest.raises(BackupError, match=DAMAGED):
        read_header(DecryptingReader(io.BytesIO(out.getvalue()), PASS))
