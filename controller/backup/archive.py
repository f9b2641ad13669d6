"""backup() and restore(): the two operations behind `msspctl backup` and `msspctl restore`.

A backup runs beside a live controller (files are read whole, the database in one snapshot) and
writes the archive under a temp name, renamed into place only when complete. A restore needs the
controller stopped (it takes the data dir's lock), reads the archive twice: first to authenticate
all of it without writing anything, then to load the database in one transaction and move the
files into place. A failure on the way leaves the data dir as it was and the database empty
(as it had to be, or as `--force` made it).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.engine import make_url

from controller.backup import dbdump, fileset
from controller.backup.crypto import DecryptingReader, EncryptingWriter
from controller.backup.errors import DAMAGED, BackupError
from controller.backup.frames import FORMAT, copy_body, read_body, read_header, write_file_frame, write_frame
from controller.config import Settings
from controller.store.db import Database
from mssp.common.clock import now_ms
from mssp.common.dirlock import DirLocked, lock_dir
from mssp.common.files import fsync_dir


@dataclass
class Summary:
    archive: Path
    created_at_ms: int = 0
    dialect: str = ""
    revision: str = ""
    files: list[fileset.Entry] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the operator must keep by other means

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive": str(self.archive), "created_at_ms": self.created_at_ms, "dialect": self.dialect,
            "revision": self.revision, "rows": sum(self.tables.values()), "notes": self.notes,
            "files": [{"path": e.path, "size": e.size, "mode": f"{e.mode:04o}"} for e in self.files],
            "tables": [{"name": n, "rows": c} for n, c in self.tables.items()],
        }


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_file(settings: Settings) -> Path | None:
    url = make_url(settings.database_url)
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None


def backup(settings: Settings, out: Path, passphrase: bytes) -> Summary:
    data_dir = settings.data_dir
    if not (data_dir / "pki" / "ca.key").is_file():
        raise BackupError(f"{data_dir} holds no controller (no pki/ca.key): pass the controller's --data-dir")
    db_file = _sqlite_file(settings)
    if db_file is not None and not db_file.is_file():
        raise BackupError(f"database {db_file} not found (pass --db-url if the controller uses PostgreSQL)")
    out = out.absolute()
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent}: no such directory")
    entries = fileset.collect(data_dir)
    notes = _outside(settings, {e.path for e in entries})
    summary = Summary(archive=out, created_at_ms=now_ms(), notes=notes)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")  # 0600
    db = Database(settings.database_url)
    try:
        with os.fdopen(fd, "wb") as fh:
            sink = EncryptingWriter(fh, passphrase)
            write_frame(sink, {"kind": "manifest", "format": FORMAT, "created_at_ms": summary.created_at_ms,
                               "data_dir": str(data_dir), "files": [e.path for e in entries]})
            for entry in entries:
                summary.files.append(_write_file(sink, data_dir, entry))
            summary.dialect = db.engine.dialect.name
            summary.revision, summary.tables = dbdump.dump(db, sink)
            write_frame(sink, {"kind": "end", "tables": summary.tables})
            sink.close()
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        db.dispose()
    return summary


def _outside(settings: Settings, archived: set[str]) -> list[str]:
    """Configured files the archive does not hold, named so that nobody counts on it."""
    notes, top = [], settings.data_dir.absolute()
    for what, path in (("plans file", settings.plans_file), ("tenant API certificate", settings.api_tls_cert),
                       ("tenant API key", settings.api_tls_key)):
        full = path.absolute() if path is not None else None
        if full is not None and full.is_file() and not (
                full.is_relative_to(top) and full.relative_to(top).as_posix() in archived):
            notes.append(f"{what} {path} is not in the archive: keep it by other means")
    if settings.feed_dir is not None and settings.feed_dir.absolute() != top / "feeds":
        notes.append(f"feed dir {settings.feed_dir} is not in the archive: keep it by other means")
    return notes


def _write_file(sink: EncryptingWriter, data_dir: Path, entry: fileset.Entry) -> fileset.Entry:
    """Size and mode from the open file: a key replaced (atomically) meanwhile is read whole, old or new."""
    with open(data_dir / entry.path, "rb") as src:
        st = os.fstat(src.fileno())
        mode = st.st_mode & 0o777
        write_file_frame(sink, {"kind": "file", "path": entry.path, "mode": mode}, src, st.st_size)
    return fileset.Entry(entry.path, mode, st.st_size)


@contextlib.contextmanager
def _frames(path: Path, passphrase: bytes) -> Iterator[Iterator[tuple[dict[str, Any], DecryptingReader]]]:
    try:
        fh: BinaryIO = open(path, "rb")
    except FileNotFoundError:
        raise BackupError(f"{path}: no such file") from None
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None

    def frames() -> Iterator[tuple[dict[str, Any], DecryptingReader]]:
        src = DecryptingReader(fh, passphrase)
        first = True
        while True:
            header = read_header(src)
            if first and (header["kind"] != "manifest" or header.get("format") != FORMAT):
                raise BackupError(f"unsupported archive content {header.get('format')!r}")
            first = False
            yield header, src
            if header["kind"] == "end":
                if not src.at_end():
                    raise BackupError(DAMAGED)
                return

    with fh:
        yield frames()


def verify(path: Path, passphrase: bytes) -> tuple[Summary, dict[str, Any]]:
    """Authenticate and parse the whole archive, writing nothing; the summary and database frame."""
    summary, database, seen = Summary(archive=path), None, set()
    with _frames(path, passphrase) as frames:
        for header, src in frames:
            kind = header["kind"]
            if kind == "manifest":
                summary.created_at_ms = int(header.get("created_at_ms") or 0)
            elif kind == "file":
                rel = fileset.safe_path(header.get("path"))
                if rel in seen:
                    raise BackupError(DAMAGED)
                seen.add(rel)
                copy_body(src, header, lambda _b: None)
                summary.files.append(fileset.Entry(rel, fileset.file_mode(rel, header.get("mode")),
                                                   header["size"]))
            elif kind == "database" and database is None:
                database = header
                summary.dialect, summary.revision = str(header.get("dialect")), str(header.get("revision"))
                summary.tables = {str(t.get("name")): 0 for t in header.get("tables") or []}
            elif kind == "rows" and database is not None and header.get("table") in summary.tables:
                summary.tables[header["table"]] += read_body(src, header).count(b"\n")
            elif kind != "end":
                raise BackupError(DAMAGED)
        if database is None:
            raise BackupError(DAMAGED)
    return summary, database


def restore(settings: Settings, path: Path, passphrase: bytes, *, force: bool = False) -> Summary:
    data_dir = settings.data_dir
    _refuse_identity(data_dir, force)
    summary, database = verify(path, passphrase)  # a bad archive or passphrase stops here: no change
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        lock = lock_dir(data_dir, holder="controller", name=settings.lock_file.name)
    except DirLocked as exc:
        raise BackupError(f"{exc} (restore needs the controller stopped)") from None
    with lock:
        fileset.recover(data_dir)
        _refuse_identity(data_dir, force)
        db_file = _sqlite_file(settings)
        created_file = db_file is not None and not db_file.exists()
        db = Database(settings.database_url)
        try:
            dbdump.known_revision(db, summary.revision)
            tables = dbdump.user_tables(db)
            if tables and not force:
                raise BackupError(f"the target database {_redacted(db.url)} is not empty ({len(tables)} "
                                  "tables): restore into a new database, or pass --force to wipe it")
            if created_file and db_file is not None:
                os.chmod(db_file, 0o600)  # tokens' digests, policies: the owner's only
            _load(settings, db, path, passphrase, database, force=force)
        except BaseException:
            db.dispose()
            if created_file and db_file is not None:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{db_file}{suffix}")
            raise
        db.dispose()
    return summary


def _refuse_identity(data_dir: Path, force: bool) -> None:
    present = fileset.existing_identity(data_dir)
    if present and not force:
        raise BackupError(f"{data_dir} already holds a controller's keys ({', '.join(present)}): "
                          "restoring would replace them; pass --force to do it anyway")


def _load(settings: Settings, db: Database, path: Path, passphrase: bytes, database: dict[str, Any],
          *, force: bool) -> None:
    if force:
        dbdump.wipe(db)
    staging = fileset.Staging(settings.data_dir)
    loader: dbdump.Loader | None = None
    try:
        dbdump.migrate(db, str(database["revision"]))
        with _frames(path, passphrase) as frames:
            for header, src in frames:
                kind = header["kind"]
                if kind == "file":
                    rel = fileset.safe_path(header.get("path"))
                    with staging.open(rel, fileset.file_mode(rel, header.get("mode"))) as out:
                        copy_body(src, header, out.write)
                elif kind == "database":
                    loader = dbdump.Loader(db, list(header.get("tables") or []))
                elif kind == "rows" and loader is not None:
                    loader.rows(header.get("table"), read_body(src, header))
        if loader is None:
            raise BackupError(DAMAGED)
        loader.commit()
        db.upgrade()  # an archive from an older release: its rows are in, now the newer schema
        staging.commit(clear=force)
    except BaseException:
        if loader is not None:
            loader.abort()
        staging.discard()
        with contextlib.suppress(Exception):
            dbdump.wipe(db)
        raise
