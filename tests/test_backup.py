"""Backup and restore of a controller's data dir and database (controller/backup/), on SQLite and on
PostgreSQL: every row and byte comes back, ids keep counting, the dump is one snapshot, and every
refusal (non-empty target, keys present, newer schema, damage) changes nothing."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from controller.backup import dbdump, fileset
from controller.backup.archive import backup, restore
from controller.backup.crypto import DecryptingReader
from controller.backup.errors import DAMAGED, BackupError
from controller.backup.frames import read_body, read_header
from controller.config import Settings
from controller.service import ControllerService
from controller.store.db import Database
from tests.support.postgres import create_database

PASS = b"a long enough passphrase"
BLOB = bytes(range(256)) * 64  # every byte value, 16 KiB
FILES = {  # path -> (content, mode)
    "pki/ca.key": (b"CA KEY", 0o600), "pki/ca.crt": (b"CA CERT", 0o644),
    "pki/signing.key": (b"SIGNING", 0o600), "pki/signing-keys.json": (b"{}", 0o600),
    "pki/signing.next.key": (b"NEXT", 0o600), "nats/operator.nk": (b"SOPERATOR", 0o600),
    "nats/account_mssp.nk": (b"SACCOUNT", 0o600), "nats/revocations.json": (b"{}", 0o600),
    "nats/tls/broker.key": (b"BROKER", 0o600), "operator.token": (b"mssp_op_x\n", 0o600),
    "listen.json": (b'{"grpc": 7443}', 0o600), "plans.yaml": (b"plans: []\n", 0o644),
    "feeds/blocklist.txt": (b"192.0.2.1\n", 0o644),
}
NOT_BACKED_UP = ("controller.json", "controller.lock", "nats/nats.conf", "nats/nats-server.log",
                 "nats/jetstream/stream.dat", "nats/jwt/account.jwt", "pki/.ca.key.123.tmp")


def other_url(request: pytest.FixtureRequest, db_url: str, tmp_path: Path, name: str) -> str:
    """A second, empty database of the same kind as `db_url`."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / name}"
    return create_database(request.getfixturevalue("postgres_server"))


def make_data_dir(data_dir: Path) -> None:
    for rel, (content, mode) in {**FILES, **{r: (b"x", 0o600) for r in NOT_BACKED_UP}}.items():
        path = data_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)


def seed(db: Database, iocs: int = 3) -> None:
    service = ControllerService(db)
    service.create_tenant("acme")
    service.add_gateway("acme", "gw1")
    for i in range(iocs):
        service.add_ioc(f"198.51.100.{i}")
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE tenant SET policy_bundle = :b"), {"b": BLOB})
        conn.execute(sa.text("UPDATE push_log SET payload = :b WHERE id = (SELECT MIN(id) FROM push_log)"),
                     {"b": BLOB[::-1]})
        conn.execute(sa.text("INSERT INTO telemetry_batch_seen (gateway_id, batch_seq, tenant_id, "
                             "period_end_ms, received_at_ms) VALUES ('g', :s, 't', :s, :s)"),
                     [{"s": n} for n in range(2500)])  # three rows frames: tables stream


def contents(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    with db.engine.connect() as conn:
        meta = sa.MetaData()
        meta.reflect(bind=conn)
        return {name: sorted(tuple(r) for r in conn.execute(sa.select(t)))
                for name, t in meta.tables.items()}


def settings_for(data_dir: Path, url: str) -> Settings:
    return Settings(data_dir=data_dir, db_url=url)


def test_backup_then_restore_brings_back_every_row_byte_and_file(
        request: pytest.FixtureRequest, db: Database, db_url: str, tmp_path: Path) -> None:
    seed(db)
    make_data_dir(tmp_path / "old")
    archive = tmp_path / "ctl.bak"
    made = backup(settings_for(tmp_path / "old", db_url), archive, PASS)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert made.tables["telemetry_batch_seen"] == 2500 and made.tables["ioc"] == 3
    assert sorted(e.path for e in made.files) == sorted(FILES)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]

    target_url = other_url(request, db_url, tmp_path, "restored.db")
    target = Database(target_url)
    try:
        got = restore(settings_for(tmp_path / "new", target_url), archive, PASS)
        assert got.tables == made.tables and got.revision == made.revision
        assert contents(target) == contents(db)
        with target.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT policy_bundle FROM tenant")).scalar_one() == BLOB
        ControllerService(target).add_ioc("198.51.100.200")  # ids go on past the restored ones
        with target.engine.connect() as conn:
            ids = list(conn.execute(sa.text("SELECT id FROM ioc ORDER BY id")).scalars())
        assert len(ids) == 4 and ids[-1] > max(ids[:-1])
    finally:
        target.dispose()
    new = tmp_path / "new"
    for rel, (content, mode) in FILES.items():
        assert (new / rel).read_bytes() == content
        assert stat.S_IMODE((new / rel).stat().st_mode) == mode, rel
    for rel in NOT_BACKED_UP:
        if rel == "controller.lock":  # restore held it (released: empty), never copied it
            assert (new / rel).read_bytes() == b""
        else:
            assert not (new / rel).exists(), rel
    for directory in ("", "pki", "nats", "nats/tls", "feeds"):
        assert stat.S_IMODE((new / directory).stat().st_mode) == 0o700, directory
    assert not (new / ".restore.tmp").exists()


def test_the_dump_reads_one_snapshot_while_writers_go_on(db: Database) -> None:
    seed(db, iocs=2)
    service = ControllerService(db)
    with dbdump.snapshot(db) as conn:
        first = conn.execute(sa.text("SELECT COUNT(*) FROM ioc")).scalar_one()
        service.add_ioc("198.51.100.99")  # another connection commits meanwhile
        assert conn.execute(sa.text("SELECT COUNT(*) FROM ioc")).scalar_one() == first
        if not db.is_sqlite:
            assert conn.execute(sa.text("SHOW transaction_isolation")).scalar_one() == "repeatable read"
            assert conn.execute(sa.text("SHOW transaction_read_only")).scalar_one() == "on"
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM ioc")).scalar_one() == first + 1


def rows_frames(archive: Path) -> dict[str, int]:
    reader = DecryptingReader(archive.open("rb"), PASS)
    frames: dict[str, int] = {}
    while (header := read_header(reader))["kind"] != "end":
        read_body(reader, header)
        if header["kind"] == "rows":
            frames[header["table"]] = frames.get(header["table"], 0) + 1
    return frames


def test_big_tables_are_written_in_bounded_frames(db: Database, db_url: str, tmp_path: Path) -> None:
    seed(db)
    make_data_dir(tmp_path / "d")
    backup(settings_for(tmp_path / "d", db_url), tmp_path / "a.bak", PASS)
    assert rows_frames(tmp_path / "a.bak")["telemetry_batch_seen"] == 3  # 1000 rows a frame


def test_restore_into_a_database_that_is_not_empty_is_refused_then_forced(
        request: pytest.FixtureRequest, db: Database, db_url: str, tmp_path: Path) -> None:
    seed(db)
    make_data_dir(tmp_path / "old")
    archive = tmp_path / "ctl.bak"
    backup(settings_for(tmp_path / "old", db_url), archive, PASS)
    busy_url = other_url(request, db_url, tmp_path, "busy.db")
    busy = Database(busy_url)
    try:
        busy.upgrade()
        ControllerService(busy).create_tenant("other")
        target = settings_for(tmp_path / "new", busy_url)
        with pytest.raises(BackupError, match=r"is not empty .* --force to wipe it"):
            restore(target, archive, PASS)
        assert [t.name for t in ControllerService(busy).list_tenants()] == ["other"]
        assert not (tmp_path / "new" / "pki").exists()
        restore(target, archive, PASS, force=True)
        assert contents(busy) == contents(db)
    finally:
        busy.dispose()


def test_restore_over_existing_keys_needs_force_and_then_leaves_none_of_them(
        db: Database, db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    seed(db)
    make_data_dir(tmp_path / "old")
    (tmp_path / "old" / "pki" / "signing.next.key").unlink()  # no rotation under way at backup time
    archive = tmp_path / "ctl.bak"
    backup(settings_for(tmp_path / "old", db_url), archive, PASS)
    target = settings_for(tmp_path / "old", other_url(request, db_url, tmp_path, "t.db"))
    (tmp_path / "old" / "pki" / "signing.next.key").write_bytes(b"STALE")
    with pytest.raises(BackupError, match=r"already holds a controller's keys .*--force"):
        restore(target, archive, PASS)
    assert (tmp_path / "old" / "pki" / "signing.next.key").read_bytes() == b"STALE"
    restore(target, archive, PASS, force=True)
    assert not (tmp_path / "old" / "pki" / "signing.next.key").exists()  # not taken for a rotation
    assert not (tmp_path / "old" / "nats" / "jwt").exists()
    assert (tmp_path / "old" / "pki" / "ca.key").read_bytes() == b"CA KEY"


def test_a_damaged_archive_or_wrong_passphrase_changes_nothing(
        db: Database, db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    seed(db)
    make_data_dir(tmp_path / "old")
    archive = tmp_path / "ctl.bak"
    backup(settings_for(tmp_path / "old", db_url), archive, PASS)
    data = archive.read_bytes()
    cut, bad = tmp_path / "cut.bak", tmp_path / "bad.bak"
    cut.write_bytes(data[: len(data) - 100])
    bad.write_bytes(data[:-20] + bytes([data[-20] ^ 1]) + data[-19:])  # the final chunk: the end frame
    target_url = other_url(request, db_url, tmp_path, "t.db")
    for path, passphrase in ((archive, b"another passphrase!"), (cut, PASS), (bad, PASS)):
        with pytest.raises(BackupError, match=DAMAGED):
            restore(settings_for(tmp_path / "new", target_url), path, passphrase)
        assert not (tmp_path / "new").exists()
    target = Database(target_url)
    try:
        assert dbdump.user_tables(target) == []
    finally:
        target.dispose()


def test_an_archive_from_a_newer_schema_is_refused(
        db: Database, db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    seed(db)
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    make_data_dir(tmp_path / "old")
    backup(settings_for(tmp_path / "old", db_url), tmp_path / "a.bak", PASS)
    with pytest.raises(BackupError, match="'9999_from_the_future', unknown to this controller"):
        restore(settings_for(tmp_path / "new", other_url(request, db_url, tmp_path, "t.db")),
                tmp_path / "a.bak", PASS)
    assert not (tmp_path / "new" / "pki").exists()


def test_an_archive_from_an_older_schema_is_loaded_then_upgraded(
        db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    old = Database(db_url)
    script = ScriptDirectory.from_config(old.alembic_config())
    older = script.get_revision("head").down_revision
    assert isinstance(older, str)
    try:
        command.upgrade(old.alembic_config(), older)
        with old.engine.begin() as conn:
            conn.execute(sa.text("UPDATE channel SET seq = 4242"))
        make_data_dir(tmp_path / "old")
        made = backup(settings_for(tmp_path / "old", db_url), tmp_path / "a.bak", PASS)
    finally:
        old.dispose()
    assert made.revision == older
    target = Database(other_url(request, db_url, tmp_path, "t.db"))
    try:
        restore(settings_for(tmp_path / "new", target.url), tmp_path / "a.bak", PASS)
        with target.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() \
                == script.get_current_head()
            assert set(conn.execute(sa.text("SELECT seq FROM channel")).scalars()) == {4242}
    finally:
        target.dispose()


def test_a_data_dir_without_a_controller_is_not_backed_up(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="holds no controller"):
        backup(settings_for(tmp_path, f"sqlite:///{tmp_path / 'x.db'}"), tmp_path / "a.bak", PASS)
    assert not (tmp_path / "a.bak").exists()



def test_configured_files_outside_the_archive_are_named(db: Database, db_url: str, tmp_path: Path) -> None:
    make_data_dir(tmp_path / "d")
    plans = tmp_path / "elsewhere-plans.yaml"
    plans.write_text("plans: []\n")
    settings = Settings(data_dir=tmp_path / "d", db_url=db_url, plans_file=plans, feed_dir=tmp_path / "f")
    made = backup(settings, tmp_path / "a.bak", PASS)
    assert made.notes == [f"plans file {plans} is not in the archive: keep it by other means",
                          f"feed dir {tmp_path / 'f'} is not in the archive: keep it by other means"]
    inside = backup(settings_for(tmp_path / "d", db_url), tmp_path / "b.bak", PASS)
    assert inside.notes == []


@pytest.mark.postgres
def test_an_archive_moves_a_controller_from_sqlite_to_postgresql(tmp_path: Path, postgres_url: str) -> None:
    source = Database(f"sqlite:///{tmp_path / 'small.db'}")
    target = Database(postgres_url)
    try:
        source.upgrade()
        seed(source)
        make_data_dir(tmp_path / "d")
        backup(settings_for(tmp_path / "d", source.url), tmp_path / "a.bak", PASS)
        restore(settings_for(tmp_path / "new", postgres_url), tmp_path / "a.bak", PASS)
        assert contents(target) == contents(source)
        ControllerService(target).add_ioc("198.51.100.201")
    finally:
        source.dispose()
        target.dispose()


def test_a_forced_commit_that_fails_half_way_puts_every_old_file_back(tmp_path: Path) -> None:
    data_dir = tmp_path / "ctl"
    make_data_dir(data_dir)
    before = {rel: (data_dir / rel).read_bytes() for rel in FILES}
    (data_dir / "pki" / "zz.key").mkdir()  # an empty dir where the archive has a file: rename fails
    staging = fileset.Staging(data_dir)
    for rel in ("pki/ca.key", "pki/zz.key"):
        with staging.open(rel, 0o600) as out:
            out.write(b"NEW")
    with pytest.raises(IsADirectoryError):
        staging.commit(clear=True)
    assert {rel: (data_dir / rel).read_bytes() for rel in FILES} == before
    assert (data_dir / "nats" / "jwt" / "account.jwt").exists()  # cleared trees come back too
    assert not (data_dir / fileset.ASIDE).exists()


def test_a_restore_first_puts_back_what_a_crashed_restore_moved_aside(
        db: Database, db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    seed(db)
    make_data_dir(tmp_path / "old")
    archive = tmp_path / "ctl.bak"
    backup(settings_for(tmp_path / "old", db_url), archive, PASS)
    data_dir = tmp_path / "crashed"
    make_data_dir(data_dir)
    aside = data_dir / fileset.ASIDE / "pki"
    aside.mkdir(parents=True)
    for name in ("ca.key", "signing.key"):  # a commit killed between moving aside and moving in
        os.replace(data_dir / "pki" / name, aside / name)
    (data_dir / "nats" / "operator.nk").unlink()
    (data_dir / "operator.token").unlink()
    target = settings_for(data_dir, other_url(request, db_url, tmp_path, "t.db"))
    with pytest.raises(BackupError, match=r"holds a controller.s keys \(pki/ca.key, pki/signing.key\)"):
        restore(target, archive, PASS)
    assert (data_dir / "pki" / "ca.key").read_bytes() == b"CA KEY"
    assert not (data_dir / fileset.ASIDE).exists()
