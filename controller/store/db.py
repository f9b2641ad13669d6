"""Engine, sessions and schema upgrades. SQLite (a file in the data dir) or PostgreSQL by URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (the driver we ship), not psycopg2."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


# Execution option naming the statement that opens a SQLite transaction (see _sqlite_begin).
SQLITE_BEGIN = "mssp_sqlite_begin"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's legacy mode sends BEGIN only before the first INSERT/UPDATE/DELETE: the reads
    # before it run outside any transaction, so "read, check, write" was not atomic (a token could
    # be spent twice). SQLAlchemy's documented recipe: pysqlite sends no BEGIN, _sqlite_begin does.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    """BEGIN IMMEDIATE takes the write lock at the start (waiting up to busy_timeout), so writers
    run one at a time and everything a transaction read is still true when it writes. Read-only
    sessions open a plain deferred BEGIN: a consistent WAL snapshot that does not queue behind writers."""
    conn.exec_driver_sql(conn.get_execution_options().get(SQLITE_BEGIN, "BEGIN IMMEDIATE"))


class Database:
    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: Engine = create_engine(self.url, **kwargs)
        self.read_engine: Engine = self.engine  # same pool; only how a SQLite transaction begins differs
        self._writer = threading.local()  # .session: the write session this thread holds (SQLite)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
            self.read_engine = self.engine.execution_options(**{SQLITE_BEGIN: "BEGIN"})

    def alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        return cfg

    def upgrade(self) -> None:
        command.upgrade(self.alembic_config(), "head")

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any exception.

        On SQLite a session holds the write lock from its start (BEGIN IMMEDIATE) unless it is
        `readonly`, which must then not write (a deferred transaction that writes fails with
        "database is locked" if another writer committed since it began). A session opened while
        the same thread holds a write session must be `readonly`: a second writer would wait for
        its own caller's lock until busy_timeout and fail."""
        guard = self.is_sqlite and not readonly
        outer: Session | None = getattr(self._writer, "session", None)
        if guard and outer is not None and outer.in_transaction():  # fail now, not after busy_timeout
            raise RuntimeError("a write session opened inside another on one thread waits for its own "
                               "SQLite lock: open the inner one readonly, or pass the outer session down")
        engine = self.read_engine if readonly else self.engine
        with Session(engine, expire_on_commit=False) as session:
            if guard:
                self._writer.session = session
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                if guard:
                    self._writer.session = outer

    def dispose(self) -> None:
        self.engine.dispose()
