"""`mssp-agent uninstall`: take enforcement down on this router (decommissioning).

Fail-static means nothing else ever removes the table or the agent's dnsmasq: a stopped agent keeps
enforcing. Uninstall is the one deliberate way out. It refuses while an agent runs on the state dir
(that agent would put the table back) and holds the state dir's lock while it works, so none can start
meanwhile. It removes what exists and says so; nothing to remove is no error (a half-finished
decommission can be run again).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from gateway_agent.backends import make_backend
from gateway_agent.errors import AgentError
from gateway_agent.identity import AgentIdentity
from gateway_agent.nft import FAMILY, TABLE
from gateway_agent.nft.runner import NftError, NftRunner
from mssp.common.dirlock import DirLocked, lock_dir

log = logging.getLogger("mssp.agent.uninstall")


class UninstallRefused(AgentError):
    """An agent still runs on the state dir, or nft refused to delete the table."""


@contextlib.contextmanager
def _held(state_dir: Path, lock_name: str) -> Iterator[None]:
    if not state_dir.is_dir():  # no state dir: no agent can hold it
        yield
        return
    try:
        lock = lock_dir(state_dir, holder="agent", name=lock_name)
    except DirLocked as exc:
        raise UninstallRefused(f"{exc} (stop the agent's service before uninstalling)") from None
    with lock:
        yield


def _table_exists(runner: NftRunner) -> bool:
    """`list tables` names tables only: cheap whatever the size of the agent's sets."""
    proc = subprocess.run(runner.argv("list", "tables", FAMILY), capture_output=True, text=True,
                          timeout=30, check=False)
    return proc.returncode == 0 and f"table {FAMILY} {TABLE}" in proc.stdout.splitlines()


def _dnsmasq_pids(backend: object) -> list[int]:
    dns = getattr(backend, "dns", None)
    if dns is None:
        return []
    return [p.pid for p in (dns.main, dns.sink) if p.adopt() and p.pid is not None]


def uninstall(state_dir: Path, lock_name: str) -> list[str]:
    """What was removed, one line each (empty: nothing was there)."""
    with _held(state_dir, lock_name):
        if shutil.which("nft") is None:
            return []  # no nftables on this host: no table can exist
        runner = NftRunner()
        removed: list[str] = []
        backend = None
        if AgentIdentity.exists(state_dir):
            try:
                backend = make_backend("nft", state_dir)
            except AgentError as exc:  # a broken enforcement.json must not keep the table in force
                log.warning("%s; deleting the table directly", exc)
        had_table = _table_exists(runner)
        try:
            if backend is not None:
                pids = _dnsmasq_pids(backend)
                backend.remove()  # stops the adopted dnsmasq processes, deletes the table
                removed += [f"stopped dnsmasq (pid {pid})" for pid in pids]
            elif had_table:
                runner.delete_table()
        except NftError as exc:
            raise UninstallRefused(f"cannot delete table {FAMILY} {TABLE}: {exc}") from None
        if had_table:
            removed.append(f"deleted table {FAMILY} {TABLE}")
        return removed
