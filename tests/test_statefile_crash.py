"""The agent's state file survives what a crash, a power cut or a full disk leaves on disk.

Torn and corrupt journal tails are tried at every byte offset of the last record; the crash between
the snapshot rename and the journal unlink is a child process SIGKILLed at exactly that point; the
full disk is a real 64 KiB tmpfs (root only)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway_agent.state import DesiredState
from gateway_agent.statefile import StateFile, StateFileError
from mssp.v1 import common_pb2, push_pb2

TENANT = "tenant:t1"
ROOT = Path(__file__).resolve().parents[1]


def delta(seq: int, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()) -> push_pb2.Push:
    def ioc(value: str) -> common_pb2.Ioc:
        return common_pb2.Ioc(type=common_pb2.IOC_TYPE_IPV4, value=value)

    body = push_pb2.IocDelta(upsert=[ioc(v) for v in add], remove=[ioc(v) for v in remove])
    return push_pb2.Push(channel="global", seq=seq, iocs=body)


def history(n: int) -> list[push_pb2.Push]:
    """A tenant policy, then `n` global IOC deltas (what the child process writes, too)."""
    policy = push_pb2.Push(channel=TENANT, seq=1, policy=common_pb2.PolicyBundle(version=3))
    return [policy, *(delta(seq, add=(f"192.0.2.{seq}",)) for seq in range(1, n + 1))]


def state_after(pushes: list[push_pb2.Push]) -> DesiredState:
    state = DesiredState(TENANT)
    for push in pushes:
        state.apply(push)
    return state


def summary(state: DesiredState | None) -> tuple[int, int, int, frozenset[str]]:
    assert state is not None
    v = state.versions()
    return v.global_seq, v.tenant_seq, state.policy.version, frozenset(i.value for i in state.live_iocs())


def journaled(directory: Path, n: int) -> tuple[StateFile, DesiredState]:
    """A snapshot holding the policy plus a journal of `n` deltas."""
    pushes = history(n)
    store = StateFile(directory)
    state = state_after(pushes[:1])
    store.save_full(state)
    for push in pushes[1:]:
        state.apply(push)
        store.append(state, push)
    return store, state


def last_record_start(directory: Path, n: int) -> int:
    """Byte offset of the journal's last record: the journal's size with one record fewer."""
    journaled(directory, n - 1)
    return (directory / "applied.journal").stat().st_size


def check_recovers(directory: Path, damaged: bytes, good_size: int) -> None:
    """Load drops the damaged last record, cuts it off, and the next append is durable."""
    journal = directory / "applied.journal"
    journal.write_bytes(damaged)
    store = StateFile(directory)
    loaded = store.load(TENANT, repair=True)
    assert summary(loaded) == summary(state_after(history(2)))
    assert journal.stat().st_size == good_size
    assert loaded is not None
    redo = delta(3, add=("192.0.2.3",))
    loaded.apply(redo)
    store.append(loaded, redo)
    assert summary(StateFile(directory).load(TENANT)) == summary(state_after(history(3)))


def test_torn_last_record_at_every_offset(tmp_path: Path) -> None:
    start = last_record_start(tmp_path / "short", 3)
    journaled(tmp_path / "full", 3)
    data = (tmp_path / "full" / "applied.journal").read_bytes()
    for cut in range(start, len(data)):
        directory = tmp_path / f"cut{cut}"
        journaled(directory, 3)
        check_recovers(directory, data[:cut], start)


def test_corrupt_last_record_at_every_offset(tmp_path: Path) -> None:
    start = last_record_start(tmp_path / "short", 3)
    journaled(tmp_path / "full", 3)
    data = (tmp_path / "full" / "applied.journal").read_bytes()
    for offset in range(start, len(data)):
        for damage in (0xFF, 0x01):
            directory = tmp_path / f"flip{offset}-{damage}"
            journaled(directory, 3)
            bad = bytearray(data)
            bad[offset] ^= damage
            check_recovers(directory, bytes(bad), start)
    # Blocks the file system allocated but never wrote (power cut): zeros where the record was.
    directory = tmp_path / "zeros"
    journaled(directory, 3)
    check_recovers(directory, data[:start] + bytes(len(data) - start + 64), start)


def test_corrupt_middle_record_is_unusable_not_cut(tmp_path: Path) -> None:
    """A bad record with a good, newer one behind it is not a tail: cutting there would drop the
    later records and re-enforce an older state. The file is left alone (the agent holds)."""
    second, third = last_record_start(tmp_path / "two", 2), last_record_start(tmp_path / "three", 3)
    journaled(tmp_path / "full", 3)
    data = (tmp_path / "full" / "applied.journal").read_bytes()
    damaged = [data[:second] + bytes(third - second) + data[third:]]  # a zero-filled block mid-file
    damaged += [bytes([data[0] ^ 0xFF]) + data[1:]]  # the magic: the file reads as legacy
    for offset in range(second, third):
        for damage in (0xFF, 0x01):
            bad = bytearray(data)
            bad[offset] ^= damage
            damaged.append(bytes(bad))
    for n, raw in enumerate(damaged):
        directory = tmp_path / f"mid{n}"
        journaled(directory, 3)
        (directory / "applied.journal").write_bytes(raw)
        with pytest.raises(StateFileError, match="follows"):
            StateFile(directory).load(TENANT, repair=True)
        assert (directory / "applied.journal").read_bytes() == raw  # nothing cut
    # Records behind the bad one that the snapshot already holds (crash before the unlink) are
    # no loss: that is still a tail, cut as before.
    store, state = journaled(tmp_path / "stale", 3)
    store.save_full(state)
    bad = bytearray(data)
    bad[second + 9] ^= 0xFF
    (tmp_path / "stale" / "applied.journal").write_bytes(bytes(bad))
    assert summary(StateFile(tmp_path / "stale").load(TENANT, repair=True)) == summary(state)


def test_journal_from_the_old_format_loads_and_is_rewritten(tmp_path: Path) -> None:
    """Files written before the records had checksums (length + body) still load."""
    def legacy(pushes: list[push_pb2.Push]) -> bytes:
        out = b""
        for push in pushes:
            body = push.SerializeToString()
            out += len(body).to_bytes(4, "big") + body
        return out

    pushes = history(3)
    (tmp_path / "applied.snapshot").write_bytes(legacy(state_after(pushes[:2]).snapshot_pushes()))
    (tmp_path / "applied.journal").write_bytes(legacy(pushes[2:]) + b"\x00\x00\x01")
    store = StateFile(tmp_path)
    assert summary(store.load(TENANT, repair=True)) == summary(state_after(pushes))
    assert not (tmp_path / "applied.journal").exists()
    assert (tmp_path / "applied.snapshot").read_bytes().startswith(b"MSSPSF2\n")
    assert summary(StateFile(tmp_path).load(TENANT)) == summary(state_after(pushes))


def test_unloadable_files_raise_state_file_error(tmp_path: Path) -> None:
    """What repair cannot fix is one clear error (the agent then holds and resyncs)."""
    journaled(tmp_path / "snap", 2)
    snapshot = tmp_path / "snap" / "applied.snapshot"
    raw = bytearray(snapshot.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    snapshot.write_bytes(bytes(raw))
    with pytest.raises(StateFileError, match="corrupt"):
        StateFile(tmp_path / "snap").load(TENANT, repair=True)
    # A hole inside the journal: the kernel had more than the file; no silent rollback.
    store, state = journaled(tmp_path / "hole", 2)
    store.append(state, delta(4, add=("192.0.2.4",)))  # as after a lost append on the old code
    with pytest.raises(StateFileError, match="missing updates"):
        StateFile(tmp_path / "hole").load(TENANT, repair=True)


def test_read_only_load_changes_nothing(tmp_path: Path) -> None:
    """`mssp-agent status` loads beside a running agent: it must not cut a tail being written."""
    journaled(tmp_path, 3)
    journal = tmp_path / "applied.journal"
    torn = journal.read_bytes()[:-3]
    journal.write_bytes(torn)
    assert summary(StateFile(tmp_path).load(TENANT)) == summary(state_after(history(2)))
    assert journal.read_bytes() == torn


# ---- a crash inside save_full --------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from gateway_agent.statefile import StateFile
    from tests.test_statefile_crash import history, state_after

    directory, point = Path(sys.argv[1]), sys.argv[2]
    pushes = history(4)
    store = StateFile(directory)
    state = state_after(pushes[:1])
    store.save_full(state)
    for push in pushes[1:]:
        state.apply(push)
        store.append(state, push)

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    real_replace, real_unlink = os.replace, Path.unlink
    def replace(src, dst):
        if point == "before-replace":
            die()
        real_replace(src, dst)
    def unlink(self, *args, **kwargs):
        if point == "after-replace" and self == store.journal_path:
            die()
        real_unlink(self, *args, **kwargs)
        if point == "after-unlink" and self == store.journal_path:
            die()
    os.replace, Path.unlink = replace, unlink
    store.save_full(state)  # compaction: the snapshot takes over the journal
    print("not killed")
""")


@pytest.mark.parametrize("point", ["before-replace", "after-replace", "after-unlink"])
def test_crash_inside_snapshot_rewrite(tmp_path: Path, point: str) -> None:
    """Killed before the rename, between the rename and the journal unlink (the journal's
    records are all in the new snapshot: Stale on the old code), or after the unlink."""
    directory = tmp_path / "state"
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(directory), point], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert (directory / "applied.journal").exists() == (point != "after-unlink")
    expected = summary(state_after(history(4)))
    store = StateFile(directory)
    loaded = store.load(TENANT, repair=True)
    assert summary(loaded) == expected
    assert loaded is not None
    more = delta(5, add=("192.0.2.5",))
    loaded.apply(more)
    store.append(loaded, more)
    assert summary(StateFile(directory).load(TENANT)) == summary(state_after(history(5)))


def test_directory_is_fsynced_after_renames_and_unlinks(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A rename is durable only once its directory is: every rename, create and unlink is
    followed by an fsync of the state directory (recorded around the real calls)."""
    events: list[str] = []
    real_fsync, real_replace, real_unlink = os.fsync, os.replace, Path.unlink
    directory = (tmp_path / "state").resolve()

    def fsync(fd: int) -> None:
        if Path(os.readlink(f"/proc/self/fd/{fd}")) == directory:
            events.append("fsync-dir")
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        real_replace(src, dst)
        events.append(f"replace {Path(dst).name}")

    def unlink(self: Path, missing_ok: bool = False) -> None:
        real_unlink(self, missing_ok=missing_ok)
        events.append(f"unlink {self.name}")

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    journaled(directory, 1)  # snapshot, then the journal is created
    assert events == ["replace applied.snapshot", "fsync-dir", "fsync-dir"]
    events.clear()
    StateFile(directory).save_full(state_after(history(1)))
    assert events == ["replace applied.snapshot", "fsync-dir", "unlink applied.journal", "fsync-dir"]


# ---- a full disk -----------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs: ENOSPC from the kernel, not from a mock."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def fill(path: Path) -> None:
    """Write until the disk is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\xaa" * 4096)
    except OSError as exc:
        assert exc.errno == 28  # ENOSPC
    finally:
        os.close(fd)


def many(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}.{i // 250}.{i % 250}" for i in range(count))


@pytest.mark.root
def test_full_disk_never_leaves_a_gap(tiny_disk: Path) -> None:
    """A failed append is rolled back and nothing is appended after it: the next change is a full
    snapshot (on the old code a smaller later record fitted and the load failed with Gap)."""
    directory = tiny_disk / "state"
    store, state = journaled(directory, 1)
    fill(tiny_disk / "filler")
    big = delta(2, add=many("10.1", 600))  # ~10 KB: does not fit in the journal's last page
    state.apply(big)
    with pytest.raises(StateFileError, match="No space"):
        store.append(state, big)
    small = delta(3, add=("192.0.2.3",))  # would fit in the page the journal already has
    state.apply(small)
    with pytest.raises(StateFileError, match="No space"):
        store.append(state, small)
    # On disk: the last state that was whole, loadable, no torn record behind it.
    assert summary(StateFile(directory).load(TENANT)) == summary(state_after(history(1)))
    (tiny_disk / "filler").unlink()
    last = delta(4, add=("192.0.2.4",))
    state.apply(last)
    store.append(state, last)
    loaded = StateFile(directory).load(TENANT)
    assert summary(loaded) == summary(state)
    assert loaded is not None and loaded.versions().global_seq == 4


@pytest.mark.root
def test_failed_append_is_followed_by_a_full_snapshot(tiny_disk: Path) -> None:
    """The append fails (no room for the record) but a snapshot of the smaller state fits: it is
    written at once, so the change is durable although the journal could not take it."""
    directory = tiny_disk / "state"
    store, state = journaled(directory, 0)
    added = delta(1, add=many("10.2", 500))
    state.apply(added)
    store.append(state, added)
    reserve = tiny_disk / "reserve"
    reserve.write_bytes(b"\x55" * 4096)
    fill(tiny_disk / "filler")
    reserve.unlink()  # one free page: enough for a small snapshot, not for the big record
    removed = delta(2, remove=many("10.2", 500))
    state.apply(removed)
    store.append(state, removed)  # no error: the full snapshot took it
    assert not store.journal_path.exists()
    assert summary(StateFile(directory).load(TENANT)) == summary(state)
    assert state.ioc_count() == 0 and state.versions().global_seq == 2


@pytest.mark.parametrize("saved_on_join", [True, False])
def test_the_alliance_channel_survives_a_restart(tmp_path: Path, saved_on_join: bool) -> None:
    """A gateway that joined the alliance keeps it across a restart, whether the snapshot was written
    when it joined (what the agent does) or only its alliance deltas are in the journal."""
    store = StateFile(tmp_path)
    state = state_after(history(2))
    store.save_full(state)
    state.follow("alliance")
    if saved_on_join:
        store.save_full(state)
    for seq in (1, 2):
        push = delta(seq, add=(f"203.0.113.{seq}",))
        push.channel = "alliance"
        change = state.apply(push)
        assert change is not None
        store.append(state, push)
    loaded = StateFile(tmp_path).load(TENANT)
    assert loaded is not None and loaded.follows_alliance and loaded.versions().alliance_seq == 2
    assert summary(loaded) == summary(state) and "203.0.113.2" in {i.value for i in loaded.live_iocs()}
