"""Broker-enforced NATS auth against a real nats-server: the controller's JWTs are the only way in, and
a gateway's user JWT pins it to its own tenant's subjects."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import socket
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import nats
import nkeys
import pytest
from nats.aio.msg import Msg
from nats.js.errors import NoStreamResponseError

from controller.domain.errors import InvalidInput
from controller.nats.auth import (
    ClaimsUpdateFailed,
    NatsIdentity,
    creds_file_text,
    decode_jwt_claims,
    gateway_inbox_prefix,
    new_user_seed,
    public_key_of,
    push_account_update,
)
from controller.nats.embedded import EmbeddedNats, EmbeddedNatsError

if TYPE_CHECKING:
    from tests.support.nats import NatsBroker

pytest_plugins = ["tests.support.nats"]

TA, TB = "tenantA", "tenantB"
REPO_ROOT = Path(__file__).resolve().parents[1]
WAIT = 5.0


class Errors:
    """error_cb collecting asynchronous -ERR messages (permissions violations) from the server."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.event = asyncio.Event()

    async def callback(self, exc: Exception) -> None:
        self.items.append(str(exc))
        self.event.set()

    async def wait_for(self, fragment: str) -> str:
        """nats-py lower-cases the server's -ERR text, subject included."""

        async def find() -> str:
            while True:
                for item in self.items:
                    if fragment.lower() in item:
                        return item
                self.event.clear()
                await self.event.wait()

        return await asyncio.wait_for(find(), WAIT)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Msg] = []
        self.queue: asyncio.Queue[Msg] = asyncio.Queue()

    async def callback(self, msg: Msg) -> None:
        self.messages.append(msg)
        await self.queue.put(msg)

    async def next(self) -> Msg:
        return await asyncio.wait_for(self.queue.get(), WAIT)


async def test_unauthenticated_connection_is_refused(nats_broker: NatsBroker) -> None:
    with pytest.raises(Exception, match=r"(?i)authorization violation"):
        await nats.connect(servers=[nats_broker.url], allow_reconnect=False, connect_timeout=2)


async def test_jwt_from_another_operator_is_refused(nats_broker: NatsBroker, tmp_path: Path) -> None:
    stranger = NatsIdentity.load_or_create(tmp_path / "other")
    seed = new_user_seed()
    jwt = stranger.gateway_user_jwt(public_key_of(seed), TA, "gw1")
    creds = nats_broker.write_creds("stranger", creds_file_text(jwt, seed))
    with pytest.raises(Exception, match=r"(?i)authorization violation"):
        await nats.connect(
            servers=[nats_broker.url], user_credentials=str(creds), allow_reconnect=False, connect_timeout=2
        )


async def test_gateway_reads_global_and_own_tenant_but_not_other_tenant(nats_broker: NatsBroker) -> None:
    ctl = await nats_broker.connect_controller()
    errors = Errors()
    gw_a = await nats_broker.connect_gateway(TA, "gwA", error_cb=errors.callback)
    gw_b = await nats_broker.connect_gateway(TB, "gwB")
    a_inbox, a_spy, b_inbox = Inbox(), Inbox(), Inbox()
    await gw_a.subscribe("mssp.push.global", cb=a_inbox.callback)
    await gw_a.subscribe(f"mssp.push.tenant.{TA}", cb=a_inbox.callback)
    await gw_a.subscribe(f"mssp.push.tenant.{TB}", cb=a_spy.callback)  # refused by the broker
    await gw_a.subscribe("mssp.push.>", cb=a_spy.callback)  # a wildcard covering B is refused too
    await gw_b.subscribe(f"mssp.push.tenant.{TB}", cb=b_inbox.callback)
    await gw_a.flush()
    await gw_b.flush()

    violation = await errors.wait_for(f'subscription to "mssp.push.tenant.{TB}"')
    assert "permissions violation" in violation.lower()
    await errors.wait_for('subscription to "mssp.push.>"')

    await ctl.publish(f"mssp.push.tenant.{TB}", b"B-policy")
    await ctl.publish("mssp.push.global", b"global-ioc")
    await ctl.publish(f"mssp.push.tenant.{TA}", b"A-policy")
    await ctl.flush()

    got = [(await a_inbox.next()).data, (await a_inbox.next()).data]
    assert got == [b"global-ioc", b"A-policy"]
    assert (await b_inbox.next()).data == b"B-policy"  # the subject itself was live
    # The controller's messages arrive in order; A-policy came after B-policy, so B's would be here.
    assert a_spy.messages == []
    assert [m.data for m in a_inbox.messages] == [b"global-ioc", b"A-policy"]


async def test_gateway_cannot_publish_as_another_gateway(nats_broker: NatsBroker) -> None:
    ctl = await nats_broker.connect_controller()
    seen = Inbox()
    await ctl.subscribe("mssp.telemetry.>", cb=seen.callback)
    await ctl.flush()
    errors = Errors()
    gw = await nats_broker.connect_gateway(TA, "gwA", error_cb=errors.callback)

    await gw.publish(f"mssp.telemetry.{TA}.gwOther.batch", b"forged-same-tenant")
    await gw.publish(f"mssp.telemetry.{TB}.gwB.batch", b"forged-other-tenant")
    await gw.publish(f"mssp.push.tenant.{TA}", b"forged-push")
    await gw.publish(f"mssp.telemetry.{TA}.gwA.batch", b"own")
    await gw.flush()

    assert (await seen.next()).data == b"own"
    assert [m.data for m in seen.messages] == [b"own"]
    for subject in (f"mssp.telemetry.{TA}.gwOther.batch", f"mssp.telemetry.{TB}.gwB.batch",
                    f"mssp.push.tenant.{TA}"):
        assert "permissions violation" in (await errors.wait_for(f'publish to "{subject}"')).lower()


async def test_gateway_cannot_read_other_inboxes(nats_broker: NatsBroker) -> None:
    errors = Errors()
    gw = await nats_broker.connect_gateway(TA, "gwA", error_cb=errors.callback)
    spy = Inbox()
    await gw.subscribe("_INBOX.>", cb=spy.callback)
    await gw.subscribe(f"{gateway_inbox_prefix('gwB')}.>", cb=spy.callback)
    await gw.subscribe(">", cb=spy.callback)
    await gw.flush()
    await errors.wait_for('subscription to "_INBOX.>"')
    await errors.wait_for(f'subscription to "{gateway_inbox_prefix("gwB")}.>"')
    await errors.wait_for('subscription to ">"')

    ctl = await nats_broker.connect_controller()
    marker = Inbox()
    await gw.subscribe("mssp.push.global", cb=marker.callback)
    await gw.flush()
    await ctl.publish("_INBOX.controller.reply", b"x")
    await ctl.publish("mssp.push.global", b"marker")
    await ctl.flush()
    assert (await marker.next()).data == b"marker"  # published after the inbox message
    assert spy.messages == []


async def test_jetstream_publish_to_own_telemetry(nats_broker: NatsBroker) -> None:
    ctl = await nats_broker.connect_controller()
    js = ctl.jetstream()
    await js.add_stream(name="TELEMETRY", subjects=["mssp.telemetry.>"])

    gw = await nats_broker.connect_gateway(TA, "gwA")
    gjs = gw.jetstream(timeout=WAIT)
    subject = f"mssp.telemetry.{TA}.gwA.batch"
    ack = await gjs.publish(subject, b"batch-1", headers={"Nats-Msg-Id": "gwA-1"})
    assert (ack.stream, ack.seq, ack.duplicate) == ("TELEMETRY", 1, None)
    again = await gjs.publish(subject, b"batch-1", headers={"Nats-Msg-Id": "gwA-1"})
    assert again.duplicate is True

    # Forged telemetry never reaches the stream; the publish gets no ack.
    forged = gw.jetstream(timeout=0.5)
    with pytest.raises((TimeoutError, NoStreamResponseError, nats.errors.TimeoutError)):
        await forged.publish(f"mssp.telemetry.{TB}.gwB.batch", b"forged")
    info = await js.stream_info("TELEMETRY")
    assert info.state.messages == 1

    # A gateway cannot reach the JetStream API (read or delete streams).
    with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
        await forged.stream_info("TELEMETRY")


async def test_revoked_gateway_is_cut_off(nats_broker: NatsBroker) -> None:
    ctl = await nats_broker.connect_controller()
    creds, public = nats_broker.gateway_creds(TA, "gwA")
    disconnected = asyncio.Event()

    async def on_disconnect() -> None:
        disconnected.set()

    gw = await nats_broker.connect(
        creds, inbox_prefix=gateway_inbox_prefix("gwA"), disconnected_cb=on_disconnect,
        max_reconnect_attempts=1,
    )
    other = await nats_broker.connect_gateway(TA, "gwKeep")
    kept = Inbox()
    await other.subscribe(f"mssp.push.tenant.{TA}", cb=kept.callback)
    await gw.flush()
    await other.flush()

    sysc = await nats_broker.connect_system()
    revoked_at = int(time.time())
    await push_account_update(sysc, nats_broker.identity.account_jwt({public: revoked_at}))

    await asyncio.wait_for(disconnected.wait(), WAIT)
    with pytest.raises(Exception, match=r"(?i)authorization violation|revoked"):
        await nats.connect(
            servers=[nats_broker.url], user_credentials=str(creds), allow_reconnect=False, connect_timeout=2
        )
    # Everyone else is unaffected.
    await ctl.publish(f"mssp.push.tenant.{TA}", b"still-here")
    assert (await kept.next()).data == b"still-here"

    # The pushed update is stored by the resolver and survives a broker restart.
    await nats_broker.embedded.restart()
    with pytest.raises(Exception, match=r"(?i)authorization violation|revoked"):
        await nats.connect(
            servers=[nats_broker.url], user_credentials=str(creds), allow_reconnect=False, connect_timeout=2
        )


async def test_foreign_account_update_grants_nothing(nats_broker: NatsBroker, tmp_path: Path) -> None:
    sysc = await nats_broker.connect_system()
    with pytest.raises(ClaimsUpdateFailed, match="expected 3 chunks"):
        await push_account_update(sysc, "garbage")
    # The broker stores any well-formed account JWT the system user hands it, but an account signed by
    # another operator is still not trusted: its users cannot log in.
    stranger = NatsIdentity.load_or_create(tmp_path / "other")
    await push_account_update(sysc, stranger.account_jwt())
    seed = new_user_seed()
    creds = nats_broker.write_creds(
        "stranger", creds_file_text(stranger.gateway_user_jwt(public_key_of(seed), TA, "gw1"), seed)
    )
    with pytest.raises(Exception, match=r"(?i)authorization violation"):
        await nats.connect(
            servers=[nats_broker.url], user_credentials=str(creds), allow_reconnect=False, connect_timeout=2
        )


async def test_broker_restart_and_crash_keep_the_url(nats_broker: NatsBroker) -> None:
    embedded = nats_broker.embedded
    url, first_pid = embedded.url, embedded.pid
    await embedded.restart()
    assert embedded.url == url and embedded.pid != first_pid
    crashed = embedded.pid
    await embedded.kill()
    assert not embedded.running
    assert crashed is not None and not _alive(crashed)
    assert await embedded.start() == url
    nc = await nats_broker.connect_controller()
    assert nc.is_connected
    await embedded.stop()
    assert not embedded.running


async def test_fresh_start_preloads_revocations(tmp_path: Path) -> None:
    """A restarted controller passes its revocation list: the newer preload must not re-admit anyone."""
    identity = NatsIdentity.load_or_create(tmp_path / "keys")
    users = {}
    for gateway in ("gwRevoked", "gwOk"):
        seed = new_user_seed()
        users[gateway] = (public_key_of(seed), tmp_path / f"{gateway}.creds")
        jwt = identity.gateway_user_jwt(public_key_of(seed), TA, gateway)
        users[gateway][1].write_text(creds_file_text(jwt, seed))
    revoked = {users["gwRevoked"][0]: int(time.time())}
    async with EmbeddedNats(identity, tmp_path / "server", revocations=revoked) as srv:
        ok = await nats.connect(servers=[srv.url], user_credentials=str(users["gwOk"][1]),
                                allow_reconnect=False, connect_timeout=2)
        await ok.close()
        with pytest.raises(Exception, match=r"(?i)authorization violation"):
            await nats.connect(servers=[srv.url], user_credentials=str(users["gwRevoked"][1]),
                               allow_reconnect=False, connect_timeout=2)


_ORPHAN_SCRIPT = """
import asyncio, os, signal, sys
from pathlib import Path
from controller.nats.auth import NatsIdentity
from controller.nats.embedded import EmbeddedNats

async def main():
    d = Path(sys.argv[1])
    srv = EmbeddedNats(NatsIdentity.load_or_create(d / "keys"), d / "server")
    await srv.start()
    print(srv.pid, flush=True)
    if sys.argv[2] == "crash":
        os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())  # "exit": returns without stop(); the atexit hook must clean up
"""


@pytest.mark.parametrize("how", ["exit", "crash"])
async def test_broker_does_not_outlive_the_controller(tmp_path: Path, how: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _ORPHAN_SCRIPT, str(tmp_path), how,
        stdout=asyncio.subprocess.PIPE, cwd=REPO_ROOT,
    )
    server_pid = 0
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)  # type: ignore[union-attr]
        server_pid = int(line)
        await asyncio.wait_for(proc.wait(), 20)
        for _ in range(100):  # up to 5 s for SIGTERM to take effect
            if not _alive(server_pid):
                break
            await asyncio.sleep(0.05)
        assert not _alive(server_pid), f"nats-server {server_pid} outlived its parent ({how})"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if server_pid and _alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)


async def test_start_failure_is_reported_with_server_output(tmp_path: Path) -> None:
    identity = NatsIdentity.load_or_create(tmp_path / "keys")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        embedded = EmbeddedNats(identity, tmp_path / "server", port=port)
        try:
            with pytest.raises(EmbeddedNatsError, match="address already in use"):
                await embedded.start()
        finally:
            await embedded.stop()
    assert not embedded.running


def test_identity_files_are_private_and_stable(tmp_path: Path) -> None:
    directory = tmp_path / "nats"
    first = NatsIdentity.load_or_create(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    seeds = sorted(directory.glob("*.nk"))
    assert len(seeds) >= 3
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in seeds)
    again = NatsIdentity.load_or_create(directory)
    assert again.operator_public_key == first.operator_public_key
    assert again.account_public_key == first.account_public_key
    assert first.operator_public_key.startswith("O") and first.account_public_key.startswith("A")

    (directory / "account_mssp.nk").write_bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
    with pytest.raises(InvalidInput, match="wrong kind"):
        NatsIdentity.load_or_create(directory)
    (directory / "account_mssp.nk").write_text("garbage")
    with pytest.raises(InvalidInput, match="not a NATS nkey seed"):
        NatsIdentity.load_or_create(directory)


def test_jwt_format_matches_nats_jwt_v2(tmp_path: Path) -> None:
    identity = NatsIdentity.load_or_create(tmp_path)
    public = public_key_of(new_user_seed())
    token = identity.gateway_user_jwt(public, TA, "gw1")
    header_b64, claims_b64, sig_b64 = token.split(".")
    assert "=" not in token
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=="))
    assert header == {"typ": "JWT", "alg": "ed25519-nkey"}
    claims = decode_jwt_claims(token)
    assert claims["iss"] == identity.account_public_key and claims["sub"] == public
    assert claims["nats"]["type"] == "user" and claims["nats"]["version"] == 2
    # Exactly the agent's one telemetry subject: the stream's per-subject limit counts per gateway.
    assert claims["nats"]["pub"] == {"allow": [f"mssp.telemetry.{TA}.gw1.batch"]}
    assert sorted(claims["nats"]["sub"]["allow"]) == sorted(
        ["mssp.push.global", f"mssp.push.tenant.{TA}", "_INBOX_gw1.>"]
    )
    base = {k: claims[k] for k in ("exp", "iat", "iss", "name", "sub")}  # Go's field order
    digest = hashlib.new("sha512_256", json.dumps(base, separators=(",", ":")).encode()).digest()
    assert claims["jti"] == base64.b32encode(digest).decode().rstrip("=")
    signature = base64.urlsafe_b64decode(sig_b64 + "=" * (-len(sig_b64) % 4))
    assert identity.account.verify(f"{header_b64}.{claims_b64}".encode(), signature)


@pytest.mark.parametrize(
    ("public", "tenant", "gateway", "message"),
    [
        ("not-a-key", TA, "gw1", "not a NATS user public key"),
        ("ACCOUNTKEY", TA, "gw1", "not a NATS user public key"),
        (None, "tenant.*", "gw1", "cannot be used in a NATS subject"),
        (None, TA, "gw1.>", "cannot be used in a NATS subject"),
        (None, TA, "", "cannot be used in a NATS subject"),
        (None, "a b", "gw1", "cannot be used in a NATS subject"),
    ],
)
def test_bad_gateway_jwt_input_is_refused(
    tmp_path: Path, public: str | None, tenant: str, gateway: str, message: str
) -> None:
    identity = NatsIdentity.load_or_create(tmp_path)
    if public == "ACCOUNTKEY":
        public = identity.account_public_key
    key = public or public_key_of(new_user_seed())
    with pytest.raises(InvalidInput, match=message):
        identity.gateway_user_jwt(key, tenant, gateway)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
