"""A portable logical dump of the store: every table as JSON lines, read in one consistent snapshot,
and its load into an empty SQLite or PostgreSQL database.

The tables are the database's own (reflected), not the models': what is dumped is exactly what the
archived Alembic revision created, and what is loaded goes into a schema migrated to that same
revision, so an archive from an older release loads first and is then upgraded by the migrations.
Rows stream both ways (never a whole table in memory); binary columns travel as base64.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection

from controller.backup.errors import DAMAGED, BackupError
from controller.backup.frames import ROWS_PER_FRAME, Sink, write_frame
from controller.store.db import Database

VERSION_TABLE = "alembic_version"


@contextmanager
def snapshot(db: Database) -> Iterator[Connection]:
    """One read-only transaction seeing one state of the whole database while writers go on:
    SQLite's deferred BEGIN (a WAL snapshot from the first read), PostgreSQL's REPEATABLE READ."""
    if db.is_sqlite:
        with db.read_engine.connect() as conn, conn.begin():
            yield conn
    else:
        with db.engine.connect() as raw:
            conn = raw.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn


def _tables(conn: Connection) -> list[sa.Table]:
    meta = sa.MetaData()
    meta.reflect(bind=conn)
    return [t for t in meta.sorted_tables if t.name != VERSION_TABLE]  # parents before children


def _revision(conn: Connection) -> str:
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        raise BackupError("the database has no schema version (alembic_version): is it a controller's?")
    revisions = list(conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    if len(revisions) != 1:
        raise BackupError(f"the database records {len(revisions)} schema versions; expected one")
    return str(revisions[0])


def _binary(table: sa.Table) -> list[str]:
    return [c.name for c in table.columns if isinstance(c.type, sa.LargeBinary)]


def _encode(value: Any, binary: bool) -> Any:
    if value is None:
        return None
    if binary or isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def dump(db: Database, sink: Sink) -> tuple[str, dict[str, int]]:
    """Write the database frame and the rows frames; returns the revision and every table's rows."""
    counts: dict[str, int] = {}
    with snapshot(db) as conn:
        tables = _tables(conn)  # the first read: on SQLite the snapshot starts here
        revision = _revision(conn)
        write_frame(sink, {"kind": "database", "dialect": db.engine.dialect.name, "revision": revision,
                           "tables": [{"name": t.name, "columns": [c.name for c in t.columns],
                                       "binary": _binary(t)} for t in tables]})
        for table in tables:
            counts[table.name] = _dump_table(conn, table, sink)
    return revision, counts


def _dump_table(conn: Connection, table: sa.Table, sink: Sink) -> int:
    binary = set(_binary(table))
    flags = [c.name in binary for c in table.columns]
    query = sa.select(table).order_by(*table.primary_key.columns)
    result = conn.execution_options(stream_results=True, yield_per=ROWS_PER_FRAME).execute(query)
    count = 0
    for part in result.partitions():
        lines = [json.dumps([_encode(v, f) for v, f in zip(row, flags, strict=True)],
                            separators=(",", ":"), allow_nan=True) for row in part]
        write_frame(sink, {"kind": "rows", "table": table.name, "count": len(lines)},
                    ("\n".join(lines) + "\n").encode())
        count += len(lines)
    return count


def known_revision(db: Database, revision: str) -> None:
    """Refuse an archive whose schema this code cannot build (made by a newer release)."""
    try:
        script = ScriptDirectory.from_config(db.alembic_config())
        if script.get_revision(revision) is None:
            raise CommandError(revision)
    except (CommandError, RevisionError):
        raise BackupError(f"the archive's database is at schema revision {revision!r}, unknown to this "
                          "controller: restore it with the release that made it (or a newer one)") from None


def user_tables(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return sorted(n for n in sa.inspect(conn).get_table_names() if n != VERSION_TABLE)


def wipe(db: Database) -> None:
    """Drop every table (ours and the version table): `restore --force`, or undoing a failed load."""
    with db.engine.begin() as conn:
        meta = sa.MetaData()
        meta.reflect(bind=conn)
        meta.drop_all(bind=conn)


def migrate(db: Database, revision: str) -> None:
    command.upgrade(db.alembic_config(), revision)


class Loader:
    """Rows into a schema just migrated to the archive's revision, all in one transaction: the seed
    rows migrations insert are replaced by the archived ones; commit() fixes sequences and commits."""

    def __init__(self, db: Database, tables: list[dict[str, Any]]) -> None:
        self.db = db
        self._conn = db.engine.connect()
        self._tx = self._conn.begin()
        meta = sa.MetaData()
        meta.reflect(bind=self._conn)
        self.counts: dict[str, int] = {}
        self._plan: dict[str, tuple[sa.Table, list[str], set[str]]] = {}
        for spec in tables:
            name, columns = spec.get("name"), spec.get("columns")
            if not isinstance(name, str) or not isinstance(columns, list):
                raise BackupError(DAMAGED)
            target = meta.tables.get(name)
            if target is None:
                raise BackupError(f"table {name!r} of the archive is not in the schema it was made with")
            missing = [c for c in columns if c not in target.columns]
            if missing:
                raise BackupError(f"columns {', '.join(map(str, missing))} of table {name!r} are not in "
                                  "the schema the archive was made with")
            self._plan[name] = (target, columns, set(spec.get("binary") or ()))
            self.counts[name] = 0
        for table in reversed(meta.sorted_tables):  # children first: foreign keys hold throughout
            if table.name != VERSION_TABLE:
                self._conn.execute(table.delete())

    def rows(self, table_name: object, body: bytes) -> None:
        if not isinstance(table_name, str) or table_name not in self._plan:
            raise BackupError(DAMAGED)
        table, columns, binary = self._plan[table_name]
        batch: list[dict[str, Any]] = []
        for line in body.splitlines():
            try:
                values = json.loads(line)
            except ValueError:
                raise BackupError(DAMAGED) from None
            if not isinstance(values, list) or len(values) != len(columns):
                raise BackupError(DAMAGED)
            batch.append({c: (base64.b64decode(v) if c in binary and v is not None else v)
                          for c, v in zip(columns, values, strict=True)})
        if batch:
            self._conn.execute(table.insert(), batch)
            self.counts[table_name] += len(batch)

    def commit(self) -> None:
        if self.db.engine.dialect.name == "postgresql":
            _fix_sequences(self._conn, [t for t, _c, _b in self._plan.values()])
        self._tx.commit()
        self._conn.close()

    def abort(self) -> None:
        if self._tx.is_active:
            self._tx.rollback()
        self._conn.close()


def _fix_sequences(conn: Connection, tables: list[sa.Table]) -> None:
    """Explicit ids were inserted: move each serial/identity sequence past the largest one."""
    quote = conn.dialect.identifier_preparer.quote
    for table in tables:
        for column in table.primary_key.columns:
            if not isinstance(column.type, sa.Integer):
                continue
            seq = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                               {"t": quote(table.name), "c": column.name}).scalar()
            if seq is None:
                continue
            col, tab = quote(column.name), quote(table.name)
            conn.execute(sa.text(f"SELECT setval(:seq, COALESCE((SELECT MAX({col}) FROM {tab}), 1), "
                                 f"(SELECT MAX({col}) FROM {tab}) IS NOT NULL)"), {"seq": seq})
