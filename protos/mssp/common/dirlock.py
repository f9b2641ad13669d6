"""One owner per directory: the controller's data dir and the agent's state dir each belong to one
running process, or two of them overwrite each other's files (and the one that stops last deletes
what the other still uses).

An exclusive flock on a lock file in the directory, held for the process lifetime. The kernel drops
it when the process dies, so a crash never leaves a stale lock behind; the pid written into the file
only names the holder in the refusal. The file itself is never deleted: unlinking a lock file lets a
third process lock a fresh inode while the second still holds the old one. The descriptor is not
inherited (PEP 446), so child processes (nats-server) never keep the lock alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class DirLocked(RuntimeError):
    """Another process holds the directory; the message names it."""

    def __init__(self, directory: Path, holder: str, pid: int | None) -> None:
        self.directory = directory
        self.pid = pid
        who = f"pid {pid}" if pid else "pid not recorded yet"
        super().__init__(
            f"another {holder} is already running on {directory} ({who}); "
            f"stop it first or use another directory"
        )


class DirLock:
    """A held lock; release() (or process exit) gives the directory up."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # still ours: the next owner writes its own pid
        os.close(fd)  # closing the only descriptor drops the flock

    def __enter__(self) -> DirLock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def holder_pid(path: Path) -> int | None:
    """The pid recorded in a lock file (None when empty, unreadable or garbage)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def lock_dir(directory: Path, *, holder: str, name: str = ".lock") -> DirLock:
    """Take `directory`'s lock for this process or raise DirLocked naming the running pid."""
    path = directory / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DirLocked(directory, holder, holder_pid(path)) from None
    except BaseException:
        os.close(fd)
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return DirLock(path, fd)


def is_held(path: Path) -> bool | None:
    """Whether some process holds the lock at `path` now (None: cannot tell, e.g. no such file).
    A probe with a shared lock, dropped at once: unlike a recorded pid, it cannot be fooled by
    the pid being reused after the holder died."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # never made (an agent older than the lock, or one not run by `mssp-agent run`)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops the probe's own shared lock
    return False
