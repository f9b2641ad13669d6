"""Which data-dir files a backup holds, and how a restore puts them back.

In: everything under pki/ (CA, push-signing keys and their manifest, server certificates), the NATS
key material and state in nats/ (operator/account/user seeds, creds, revocations.json, tls/),
operator.token, listen.json (agents know these ports), plans.yaml and feeds/. Out: what a start
regenerates or what is not ours to keep: the database (dumped logically instead), controller.json,
the lock, nats.conf, the broker log, the account resolver (jwt/) and JetStream storage.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from controller.backup.errors import BackupError
from mssp.common.files import fsync_dir

TOP_FILES = ("operator.token", "listen.json", "plans.yaml")
TREES = ("pki", "nats", "feeds")
SKIP_DIRS = {"nats/jetstream", "nats/jwt"}
SKIP_FILES = {"nats/nats.conf", "nats/nats-server.log"}
# Any of these in a data dir means it already is some controller: restoring over it needs --force.
IDENTITY = ("pki/ca.key", "pki/signing.key", "nats/operator.nk", "operator.token")
# A forced restore clears every file a backup would hold, and these, so that nothing of the previous
# identity survives beside ours (a stale signing.next.key would be taken for a rotation under way;
# jwt/ holds its accounts; nats.conf names its operator).
CLEARED = ("nats/jwt", "nats/nats.conf")
ASIDE = ".restore.old"  # where a commit keeps the files it replaces until ours are all in place


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the data dir, POSIX separators
    mode: int
    size: int


def _skipped(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return rel in SKIP_FILES or name.endswith(".tmp") or name.endswith(".lock")


def collect(data_dir: Path) -> list[Entry]:
    """The regular files to back up (symlinks are refused: a key must be the file itself)."""
    found: list[Entry] = []
    for name in TOP_FILES:
        entry = _entry(data_dir, name)
        if entry is not None:
            found.append(entry)
    for tree in TREES:
        root = data_dir / tree
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = Path(dirpath).relative_to(data_dir).as_posix()
            dirnames[:] = sorted(d for d in dirnames if f"{rel_dir}/{d}" not in SKIP_DIRS)
            for name in sorted(filenames):
                rel = f"{rel_dir}/{name}"
                if not _skipped(rel):
                    entry = _entry(data_dir, rel)
                    if entry is not None:
                        found.append(entry)
    return found


def _entry(data_dir: Path, rel: str) -> Entry | None:
    try:
        st = os.lstat(data_dir / rel)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise BackupError(f"{data_dir / rel} is a symbolic link: back up the file it points to instead")
    if not stat.S_ISREG(st.st_mode):
        return None
    return Entry(rel, stat.S_IMODE(st.st_mode), st.st_size)


def safe_path(rel: object) -> str:
    """An archive path that stays inside the data dir and inside the backed-up set."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise BackupError(f"archive names an invalid path {rel!r}")
    parts = PurePosixPath(rel).parts
    if rel.startswith("/") or ".." in parts or "." in parts:
        raise BackupError(f"archive names a path outside the data dir: {rel!r}")
    if not (rel in TOP_FILES or parts[0] in TREES) or _skipped(rel) \
            or any(rel.startswith(d + "/") for d in SKIP_DIRS):
        raise BackupError(f"archive names a file a backup never holds: {rel!r}")
    return rel


SECRET_SUFFIXES = (".key", ".nk", ".creds", ".token", ".seed")


def file_mode(rel: str, archived: object) -> int:
    """The archived permission bits, never more open than 0644; secrets always 0600."""
    if rel.endswith(SECRET_SUFFIXES) or not isinstance(archived, int):
        return 0o600
    return (archived & 0o644) | 0o600


def existing_identity(data_dir: Path) -> list[str]:
    return [rel for rel in IDENTITY if (data_dir / rel).exists()]


class Staging:
    """Restored files land in a 0700 temp dir inside the data dir and move into place only once the
    whole archive is in (commit); anything else leaves the data dir as it was."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.root = data_dir / ".restore.tmp"
        self.aside = data_dir / ASIDE
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(mode=0o700)
        self.paths: list[str] = []

    @contextlib.contextmanager
    def open(self, rel: str, mode: int) -> Iterator[BinaryIO]:
        target = self.root / rel
        _mkdirs(target.parent, self.root)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(target, mode)
        self.paths.append(rel)

    def commit(self, *, clear: bool) -> None:
        """Old files move aside (never unlinked) before ours move in, and come back if anything
        fails on the way, so a failed commit leaves the data dir as it was."""
        shutil.rmtree(self.aside, ignore_errors=True)
        self.aside.mkdir(mode=0o700)
        placed: list[Path] = []
        try:
            self._move_aside(clear)
            for rel in self.paths:
                target = self.data_dir / rel
                _mkdirs(target.parent, self.data_dir)
                os.replace(self.root / rel, target)
                placed.append(target)
                fsync_dir(target.parent)
        except BaseException:
            for target in placed:
                with contextlib.suppress(OSError):
                    target.unlink()
            recover(self.data_dir)
            raise
        shutil.rmtree(self.aside, ignore_errors=True)
        self.discard()

    def _move_aside(self, clear: bool) -> None:
        victims = [e.path for e in collect(self.data_dir)] + list(CLEARED) if clear else list(self.paths)
        for rel in victims:
            source = self.data_dir / rel
            if not source.exists() and not source.is_symlink():
                continue
            _mkdirs((self.aside / rel).parent, self.aside)
            os.replace(source, self.aside / rel)
        fsync_dir(self.data_dir)

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def recover(data_dir: Path) -> None:
    """Every file a commit moved aside returns to its place, over whatever stands there now: after
    a failed commit, or first thing in the next restore when a crash cut the commit short."""
    aside = data_dir / ASIDE
    if not aside.is_dir():
        return
    for dirpath, _dirnames, filenames in os.walk(aside):
        for name in filenames:
            moved = Path(dirpath) / name
            target = data_dir / moved.relative_to(aside)
            _mkdirs(target.parent, data_dir)
            os.replace(moved, target)
            fsync_dir(target.parent)
    shutil.rmtree(aside, ignore_errors=True)


def _mkdirs(directory: Path, top: Path) -> None:
    """Create `directory` and its parents below `top`, each 0700 (mkdir's mode obeys the umask)."""
    missing: list[Path] = []
    d = directory
    while d != top and not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700)
        os.chmod(d, 0o700)
