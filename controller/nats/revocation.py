"""Keeps the broker's revocation list equal to the database's revoked gateways, whatever happens.

The database is the source of truth (controller/store/revoked.py). The broker learns revocations
from the account JWT, so every change rebuilds that JWT from the database and pushes it through the
system account. One lock covers rebuild + write + push, so concurrent revokes cannot lose each other's
keys: whichever push comes last was built after every earlier commit. A push that fails (broker
down, restarting, an external cluster unreachable) is retried with backoff until the broker confirms
it, and a reconcile every `period` compares what the broker holds (a claims lookup) with the database
and pushes when they differ: at start, after a broker restored from an old backup, or after another
controller replica pushed a JWT built before our commit.

Revocations are never withdrawn here: the list pushed is the database's revoked set plus whatever was
pushed before (`revocations.json`, the record of the last confirmed list), so a database restored
from an older backup cannot re-admit a revoked gateway at the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient

from controller.nats.auth import UPDATE_TIMEOUT, NatsIdentity, decode_jwt_claims, push_account_update
from controller.nats.system import SystemConnection
from mssp.common.aio import cancel_and_wait, wait_event

log = logging.getLogger("mssp.controller.revocation")

LOOKUP_SUBJECT = "$SYS.REQ.ACCOUNT.{}.CLAIMS.LOOKUP"
STATE_FILE = "revocations.json"


@dataclass
class RevocationStats:
    pushes: int = 0  # account JWTs the broker confirmed
    failures: int = 0  # pushes or lookups that failed (retried with backoff)
    in_sync: int = 0  # reconciles that found the broker already up to date
    last_error: str = ""


def write_state(path: Path, revocations: Mapping[str, int]) -> None:
    """Atomically replace `path` (a temp file of our own in the same directory, fsynced, renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(dict(sorted(revocations.items())), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_state(path: Path) -> dict[str, int]:
    """The last confirmed list; an unreadable file is logged and treated as empty (the database
    still has every revocation)."""
    try:
        data = json.loads(path.read_text())
        return {str(k): int(v) for k, v in data.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return {}


def merged(*lists: Mapping[str, int]) -> dict[str, int]:
    """Union of revocation lists, the latest time per key (a later time revokes more JWTs)."""
    out: dict[str, int] = {}
    for revocations in lists:
        for key, at in revocations.items():
            out[key] = max(int(at), out.get(key, 0))
    return out


def covers(held: Mapping[str, int], wanted: Mapping[str, int]) -> bool:
    """True when the broker's list revokes at least what we want revoked."""
    return all(held.get(key, -1) >= at for key, at in wanted.items())


async def broker_revocations(nc_system: NatsClient, account_public_key: str) -> dict[str, int]:
    """The revocations of the account JWT the broker is using now (the full resolver answers)."""
    reply = await nc_system.request(LOOKUP_SUBJECT.format(account_public_key), b"", timeout=UPDATE_TIMEOUT)
    claims: dict[str, Any] = decode_jwt_claims(reply.data.decode(errors="replace").strip())
    if claims.get("sub") != account_public_key:
        raise ValueError(f"claims lookup answered for {str(claims.get('sub'))[:60]!r}")
    return {str(k): int(v) for k, v in (claims.get("nats", {}).get("revocations") or {}).items()}


class RevocationSync:
    """Rebuild, record and push the account JWT's revocations; retry and reconcile in the background.

    `load_revoked` reads the database (it runs in a worker thread). `connect_options` gives the
    nats.connect arguments (servers=, TLS) and `creds` the system account user's credentials; the
    connection is opened lazily and kept.
    """

    def __init__(
        self,
        identity: NatsIdentity,
        load_revoked: Callable[[], Mapping[str, int]],
        connect_options: Callable[[], Mapping[str, Any]],
        creds: Path,
        *,
        state_file: Path,
        period: float = 60.0,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self.identity = identity
        self.load_revoked = load_revoked
        self.connect_options = connect_options
        self.creds = creds
        self.state_file = state_file
        self.period = period
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stats = RevocationStats()
        self.confirmed: dict[str, int] | None = None  # what the broker last confirmed holding
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._system = SystemConnection(connect_options, creds, "mssp-controller-system")
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def desired(self) -> dict[str, int]:
        """Database revocations plus those pushed before (blocking: call it from a thread)."""
        return merged(read_state(self.state_file), self.load_revoked())

    async def start(self) -> None:
        """Reconcile in the background from now on: the first pass runs at once (at start, an
        external broker may never have heard of revocations made while we were down)."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="nats-revocations")

    async def stop(self) -> None:
        # Not the cancel alone: nats-py's request (asyncio.wait_for on 3.11) can swallow a cancel
        # that lands as the reply arrives, and the loop would then wait out its period.
        self._stopping = True
        self._wake.set()
        await cancel_and_wait(self._task)
        self._task = None
        await self._system.close()

    async def revoked(self) -> bool:
        """A revocation was committed: push now. False if the broker did not confirm; the
        background loop keeps retrying (with backoff) until it does."""
        ok = await self.reconcile(force_push=True)
        if not ok:
            self._wake.set()
        return ok

    async def reconcile(self, *, force_push: bool = False) -> bool:
        """Make the broker hold the desired list; True once it confirmed (or already held it)."""
        async with self._lock:
            try:
                desired = await asyncio.to_thread(self.desired)
                nc = await self._system.get()
                if not nc.is_connected:  # reconnecting: fail fast, do not hold the lock for timeouts
                    raise ConnectionError("not connected to the broker")
                if not force_push:
                    try:
                        held = await broker_revocations(nc, self.identity.account_public_key)
                    except Exception as exc:  # a broker that cannot say gets the push
                        log.debug("claims lookup failed (%s); pushing", exc)
                    else:
                        if covers(held, desired):
                            self.stats.in_sync += 1
                            await self._confirmed(merged(desired, held))
                            return True
                await push_account_update(nc, self.identity.account_jwt(desired))
                self.stats.pushes += 1
                await self._confirmed(desired)
                log.info("broker holds %d revoked NATS users", len(desired))
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("NATS revocation update not confirmed (will retry): %s", self.stats.last_error)
                return False

    async def _confirmed(self, revocations: dict[str, int]) -> None:
        if self.confirmed != revocations:
            await asyncio.to_thread(write_state, self.state_file, revocations)
        self.confirmed = revocations

    async def _run(self) -> None:
        backoff = self.min_backoff
        while not self._stopping:
            self._wake.clear()
            if await self.reconcile():
                delay, backoff = self.period, self.min_backoff
            else:
                delay, backoff = backoff, min(backoff * 2, self.max_backoff)
            await wait_event(self._wake, delay)
