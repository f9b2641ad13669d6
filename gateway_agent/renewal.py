"""Certificate renewal: at 60-70% of its lifetime the agent makes a fresh TLS key and NATS nkey
here, on the router, and asks the controller (over mTLS, with the certificate it holds) for a new
certificate and NATS JWT. A router nobody touches stays enrolled for as long as it runs.

The answer is written to `renewal.json` (0600) before the three files it replaces, and removed
after them, so a crash between two of the writes is finished on the next start (`recover`): the
key and certificate on disk always belong together. A renewal the agent never saw (a cut
connection) costs nothing: the controller keeps the certificate it replaced valid, and the agent
asks again. A revoked gateway is refused; the agent keeps enforcing what it has (fail-static) and
says so in its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway_agent.clock import AgentClock
from gateway_agent.identity import CREDS_LOCK, AgentIdentity, make_nats_user_seed, make_tls_key_and_csr
from mssp.common.creds import creds_file_text, jwt_subject
from mssp.common.files import write_private
from mssp.v1 import gateway_pb2, gateway_pb2_grpc

log = logging.getLogger("mssp.agent")

RENEWAL_FILE = "renewal.json"
# Where in its lifetime a certificate is renewed: 60-70%, fixed per certificate (from its serial), so
# routers enrolled together in one day do not all renew in the same minute, a restart does not move
# it, and the controller's "overdue" at 75% is always later.
RENEW_FROM, RENEW_SPREAD = 0.60, 0.10
RETRY_FIRST = 5.0  # seconds; doubling, jittered, capped at RETRY_CAP and by the time left
RETRY_CAP = 3600.0
RPC_TIMEOUT = 15.0


class RenewalError(Exception):
    pass


def validity(cert_path: Path) -> tuple[float, float]:
    """(not before, not after) of the certificate, unix seconds."""
    return schedule(cert_path)[1:]


def renew_at(cert_path: Path) -> float:
    return schedule(cert_path)[0]


def schedule(cert_path: Path) -> tuple[float, float, float]:
    """(when to renew, not before, not after) of the certificate, unix seconds: one read."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    start, end = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
    fraction = RENEW_FROM + RENEW_SPREAD * (cert.serial_number % 1000) / 1000
    return start + (end - start) * fraction, start, end


def _install(identity: AgentIdentity, pending: dict[str, str]) -> None:
    write_private(identity.key_path, pending["key"].encode())
    write_private(identity.cert_path, pending["cert"].encode())
    with CREDS_LOCK:
        write_private(identity.creds_path, creds_file_text(pending["jwt"], pending["seed"].encode()).encode())
    (identity.state_dir / RENEWAL_FILE).unlink(missing_ok=True)


def recover(identity: AgentIdentity) -> bool:
    """Finish a renewal a crash interrupted (True), before anything reads the key or certificate."""
    path = identity.state_dir / RENEWAL_FILE
    try:
        pending = json.loads(path.read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:  # torn before it was complete: the old files are untouched
        log.warning("%s: dropping an unfinished renewal (%s)", identity.label, exc)
        path.unlink(missing_ok=True)
        return False
    _install(identity, pending)
    log.info("%s: finished the certificate renewal a restart interrupted", identity.label)
    return True


def _check(reply: gateway_pb2.RenewResponse, key_pem: bytes, nats_public: str) -> None:
    """The answer is for the keys we made (a mix-up would lock the router out)."""
    try:
        cert = x509.load_pem_x509_certificate(reply.client_cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        same_key = cert.public_key() == key.public_key()
        jwt_ok = jwt_subject(reply.nats_user_jwt) == nats_public
    except ValueError as exc:
        raise RenewalError(f"malformed renewal answer: {exc}") from exc
    if not same_key or not jwt_ok:
        raise RenewalError("the renewal answer is not for the keys this router made")


class Renewer:
    def __init__(
        self, identity: AgentIdentity, stub: Callable[[], gateway_pb2_grpc.GatewayServiceStub | None],
        on_renewed: Callable[[], Awaitable[None]], clock: AgentClock | None = None,
    ) -> None:
        self.identity = identity
        # The controller's time when the router's is far off: a clock far ahead would renew in a loop.
        self.agent_clock = clock or AgentClock()
        self.expires_at = 0.0  # of the certificate on disk, read off the event loop
        self.stub = stub
        self.on_renewed = on_renewed  # reopen the gRPC channel with the new certificate
        self.last_error = ""
        self.renewed_at = 0.0
        self.refused = False  # the controller refused: revoked (enforcement stays as it is)
        # Whether to renew before 60-70%: the certificate is from a CA being replaced (catrust.py;
        # blocking, run on a thread), and the event that makes the wait re-check it.
        self.early: Callable[[], bool] = lambda: False
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def clock(self) -> float:
        return self.agent_clock.now_s()

    def status(self) -> dict[str, object]:
        return {"expires_at": _iso(self.expires_at), "renewed_at": _iso(self.renewed_at),
                "last_error": self.last_error, "refused": self.refused}

    async def run(self) -> None:
        attempt = 0
        await self.agent_clock.known.wait()  # the first status answer tells us the controller's time
        while True:
            self._wake.clear()  # before the checks: a wake during them cuts the wait short
            try:
                due, _, self.expires_at = await asyncio.to_thread(schedule, self.identity.cert_path)
            except (OSError, ValueError) as exc:  # never the end of renewal: the router would drop off
                self.last_error = f"certificate unreadable: {exc}"
                log.error("%s: %s", self.identity.label, self.last_error)
                await asyncio.sleep(60.0)
                continue
            wait = due - self.clock()
            if wait > 0 and await asyncio.to_thread(self.early):
                wait = 0
            if wait > 0:  # re-read after: the file may have been replaced
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(wait, RETRY_CAP))
                continue
            try:
                await self.renew_once()
                attempt = 0
            except (RenewalError, grpc.aio.AioRpcError, OSError) as exc:
                detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                self.refused = isinstance(exc, grpc.aio.AioRpcError) and \
                    exc.code() == grpc.StatusCode.UNAUTHENTICATED
                self.last_error = f"certificate renewal failed: {detail}"
                left = self.expires_at - self.clock()
                delay = min(RETRY_FIRST * 2 ** min(attempt, 20), RETRY_CAP, max(left / 4, RETRY_FIRST))
                delay *= random.uniform(0.5, 1.0)
                log.warning("%s: %s; retrying in %.0fs (certificate expires in %.0fs)", self.identity.label,
                            self.last_error, delay, left)
                attempt += 1
                await asyncio.sleep(delay)

    async def renew_once(self) -> None:
        stub = self.stub()
        if stub is None:
            raise RenewalError("not connected to the controller yet")
        key_pem, csr_pem = await asyncio.to_thread(make_tls_key_and_csr)
        seed, nats_public = make_nats_user_seed()
        reply = await stub.Renew(gateway_pb2.RenewRequest(csr_pem=csr_pem, nats_public_key=nats_public),
                                 timeout=RPC_TIMEOUT)
        _check(reply, key_pem, nats_public)
        pending = {"key": key_pem.decode(), "cert": reply.client_cert_pem.decode(), "seed": seed.decode(),
                   "jwt": reply.nats_user_jwt}
        path = self.identity.state_dir / RENEWAL_FILE
        await asyncio.to_thread(write_private, path, json.dumps(pending).encode())
        await asyncio.to_thread(_install, self.identity, pending)
        self.renewed_at, self.last_error, self.refused = self.clock(), "", False
        self.expires_at = reply.not_after_ms / 1000
        log.info("%s: certificate renewed, valid until %s", self.identity.label,
                 _iso(reply.not_after_ms / 1000))
        await self.on_renewed()


def _iso(seconds: float) -> str:
    if not seconds:
        return ""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")
