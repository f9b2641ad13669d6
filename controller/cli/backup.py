"""`msspctl backup` and `msspctl restore`: the controller's keys, settings and database in one
passphrase-encrypted archive (controller/backup/), so a lost host comes back as the same controller
and no router re-enrolls. They work on the data dir and database directly, not over gRPC."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from controller.cli import output
from controller.cli.client import CliError
from controller.cli.output import Format, Output
from controller.cli.server import settings_from

PASSPHRASE_ENV = "MSSP_BACKUP_PASSPHRASE"

_DATA_DIR = typer.Option(None, "--data-dir", help="controller data dir (env MSSP_DATA_DIR)")
_DB_URL = typer.Option(None, "--db-url", help="the controller's database URL (env MSSP_DB_URL; "
                       "default: SQLite in the data dir)")
_PASSPHRASE_FILE = typer.Option(None, "--passphrase-file", help=f"read the passphrase from this file "
                                f"(else env {PASSPHRASE_ENV}, else a prompt)")


def _passphrase(path: Path | None, *, confirm: bool) -> bytes:
    from controller.backup.crypto import check_passphrase

    if path is not None:
        try:
            text = path.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            raise CliError(f"--passphrase-file {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read --passphrase-file {path}: {exc}") from None
    elif os.environ.get(PASSPHRASE_ENV):
        text = os.environ[PASSPHRASE_ENV]
    else:
        text = typer.prompt("archive passphrase", hide_input=True, confirmation_prompt=confirm)
    return _checked(check_passphrase, text)


def _checked(check: Any, text: str) -> bytes:
    from controller.backup.errors import BackupError

    try:
        return bytes(check(text))
    except BackupError as exc:
        raise CliError(str(exc)) from None


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from controller.backup.errors import BackupError

    try:
        return fn(*args, **kwargs)
    except BackupError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise CliError(f"{where}{exc.strerror or exc}") from None


def _show(summary: Any, fmt: Format, headline: str) -> None:
    if fmt is Format.json:
        output.print_json(summary.as_dict())
        return
    rows = sum(summary.tables.values())
    output.console().print(f"{output.esc(headline)}: {len(summary.files)} files, {rows} rows in "
                           f"{len(summary.tables)} tables (schema {output.esc(summary.revision or '?')})")
    files = output.table("file", "mode", "bytes")
    for entry in summary.files:
        output.add_row(files, entry.path, f"{entry.mode:04o}", str(entry.size))
    output.console().print(files)
    tables = output.table("table", "rows")
    for name, count in summary.tables.items():
        output.add_row(tables, name, str(count))
    output.console().print(tables)


def backup(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="archive to write (created 0600; replaced whole)"),
    data_dir: Path | None = _DATA_DIR,
    db_url: str | None = _DB_URL,
    passphrase_file: Path | None = _PASSPHRASE_FILE,
    fmt: Output = Format.table,
) -> None:
    """Write an encrypted archive of the controller's CA, signing and NATS keys, operator token,
    listener ports and database. Safe while the controller runs (one consistent database snapshot)."""
    settings = settings_from(ctx, data_dir=data_dir, db_url=db_url)
    passphrase = _passphrase(passphrase_file, confirm=True)
    from controller.backup.archive import backup as run_backup

    summary = _run(run_backup, settings, out, passphrase)
    _show(summary, fmt, f"backup written to {summary.archive}")
    if fmt is Format.table:
        for note in summary.notes:
            output.console().print(f"[yellow]note:[/yellow] {output.esc(note)}")
        output.console().print("keep the passphrase apart from the archive: nothing restores without it")


def restore(
    ctx: typer.Context,
    archive: Path = typer.Argument(..., help="an archive written by `msspctl backup`"),
    data_dir: Path | None = _DATA_DIR,
    db_url: str | None = _DB_URL,
    passphrase_file: Path | None = _PASSPHRASE_FILE,
    force: bool = typer.Option(False, "--force", help="replace the keys already in the data dir and wipe "
                               "a database that is not empty"),
    fmt: Output = Format.table,
) -> None:
    """Bring a controller back from an archive into a data dir (and an empty database); the
    controller must be stopped. Enrolled gateways reconnect to it as before."""
    settings = settings_from(ctx, data_dir=data_dir, db_url=db_url)
    passphrase = _passphrase(passphrase_file, confirm=False)
    from controller.backup.archive import restore as run_restore

    summary = _run(run_restore, settings, archive, passphrase, force=force)
    _show(summary, fmt, f"restored {archive} into {settings.data_dir}")
