"""Push-signing key rotation: the agent's key ring (unknown and retired keys refused, sets adopted
only from GetBrokers, never from a push), the controller's key files (a crash at any step of a
rotation), and the whole rotation against a real controller, broker and agents: announced over NATS
signed by the old key, fetched over mTLS, learnt by an agent that was offline, a forged announcement
ignored, and the old key refused once the overlap has passed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.domain.errors import Conflict, InvalidInput
from controller.domain.models import StatusUpdate, Versions
from controller.grpc_api.signing import KeyRotation
from controller.service import ControllerService
from controller.signing_keys import ACTIVE, MANIFEST, NEXT, SigningKeys
from controller.simulation import wait_until
from controller.store.db import Database
from mssp.common.clock import now_ms
from mssp.common.envelope import PushRejected, UnknownSigner, open_signed, sign_push
from mssp.common.keyring import KeyRing, Trusted, key_id
from mssp.v1 import common_pb2, operator_pb2, push_pb2
from tests.support.fleet import RunningController

WAIT = 30.0
CHANNELS = {"global"}


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def beacon(key: Ed25519PrivateKey, seq: int = 1) -> push_pb2.SignedEnvelope:
    return sign_push(key, push_pb2.Push(channel="global", seq=seq, beacon=push_pb2.Beacon()))


def test_key_ring_refuses_unknown_and_retired_keys() -> None:
    old, new, stranger = (Ed25519PrivateKey.generate() for _ in range(3))
    ring = KeyRing([Trusted(raw(old), now_ms() + 60_000), Trusted(raw(new))], issued_at_ms=5)
    assert open_signed(ring, beacon(old), CHANNELS).seq == 1  # in its overlap
    assert open_signed(ring, beacon(new), CHANNELS).seq == 1
    with pytest.raises(UnknownSigner, match="unknown key"):
        open_signed(ring, beacon(stranger), CHANNELS)
    forged = beacon(stranger)
    forged.key_id = key_id(raw(new))  # names a trusted key, signed by another
    with pytest.raises(PushRejected, match="bad signature"):
        open_signed(ring, forged, CHANNELS)
    retired = KeyRing([Trusted(raw(old), now_ms() - 1), Trusted(raw(new))], issued_at_ms=6)
    with pytest.raises(UnknownSigner, match="retired"):
        open_signed(retired, beacon(old), CHANNELS)


def test_key_ring_takes_only_well_formed_sets() -> None:
    b = Ed25519PrivateKey.generate()
    answered = common_pb2.SigningKeys(keys=[common_pb2.TrustedKey(public_key=raw(b))], issued_at_ms=11)
    adopted = KeyRing.of(answered)
    assert adopted is not None and set(adopted.keys) == {key_id(raw(b))}
    assert KeyRing.of(common_pb2.SigningKeys(issued_at_ms=12)) is None  # empty
    short = common_pb2.SigningKeys(keys=[common_pb2.TrustedKey(public_key=b"x")], issued_at_ms=12)
    assert KeyRing.of(short) is None
    many = common_pb2.SigningKeys(keys=[common_pb2.TrustedKey(public_key=raw(b))] * 9, issued_at_ms=12)
    assert KeyRing.of(many) is None
    assert KeyRing.from_json(adopted.to_json(), 11).keys == adopted.keys


def test_rotation_files_survive_a_crash_at_every_step(tmp_path: Path) -> None:
    keys = SigningKeys.load_or_create(tmp_path)
    first = raw(keys.active)
    with pytest.raises(InvalidInput, match="overlap"):
        keys.begin_rotation(-1)
    assert not (tmp_path / NEXT).exists() and raw(SigningKeys.load_or_create(tmp_path).active) == first

    # Crash after the new key was written but before the set: the rotation never happened.
    stray = Ed25519PrivateKey.generate()
    (tmp_path / NEXT).write_bytes(stray.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    again = SigningKeys.load_or_create(tmp_path)
    assert raw(again.active) == first and not (tmp_path / NEXT).exists()

    # Crash after the set was written, before the switch: the next start completes it.
    old, new = again.begin_rotation(60)
    with pytest.raises(Conflict, match="under way"):
        again.begin_rotation(60)
    assert raw(old) == first and (tmp_path / NEXT).exists()
    resumed = SigningKeys.load_or_create(tmp_path)
    assert raw(resumed.active) == raw(new) and not (tmp_path / NEXT).exists()
    infos = {k.key_id: k for k in resumed.infos()}
    assert infos[key_id(first)].retires_at_ms > now_ms() and not infos[key_id(raw(new))].retires_at_ms
    assert (tmp_path / ACTIVE).stat().st_mode & 0o077 == 0 and (tmp_path / MANIFEST).exists()

    # A clean rotation: the old private key is gone from disk, the set lists both.
    old2, new2 = resumed.begin_rotation(60)
    resumed.finish_rotation(new2)
    assert raw(SigningKeys.load_or_create(tmp_path).active) == raw(new2)
    assert {k.public_key for k in resumed.trusted().keys} == {first, raw(new), raw(new2)}
    assert raw(old2) == raw(new)


async def test_rotation_reaches_online_and_offline_agents_and_retires_the_old_key(
    controller: RunningController,
) -> None:
    op = controller.op
    await op.create_tenant("acme")
    online = await controller.enroll("acme", "online")
    offline = await controller.enroll("acme", "offline")
    await op.add_ioc("203.0.113.1")
    await wait_until(lambda: "203.0.113.1" in online.ioc_values() and "203.0.113.1" in offline.ioc_values(),
                     within=WAIT)
    await offline.stop()
    old_key = SigningKeys.load_or_create(controller.settings.pki_dir).active
    old_id = key_id(raw(old_key))

    reply = await op.call("RotateSigningKey", operator_pb2.RotateSigningKeyRequest(overlap_seconds=8))
    rejected = online.agent.push_stats.rejected
    head = online.versions().global_seq
    # Within the overlap a push signed by the old key is still taken (checked first: the overlap is short).
    await online.agent.handle_envelope_bytes(beacon(old_key, head).SerializeToString())
    assert online.agent.push_stats.rejected == rejected
    assert reply.announced and len(reply.keys) == 2
    active = next(k for k in reply.keys if k.active)
    retiring = next(k for k in reply.keys if not k.active)
    assert retiring.key_id == old_id and retiring.retires_at_ms > now_ms() and active.key_id != old_id
    await wait_until(lambda: active.key_id in online.agent.keys.keys, within=WAIT)  # announced, then asked

    # An announcement signed by the retiring key (a leaked key, with the broker) names its own set:
    # the agent only asks GetBrokers, and keeps the controller's set.
    stranger = raw(Ed25519PrivateKey.generate())
    forged_set = common_pb2.SigningKeys(keys=[common_pb2.TrustedKey(public_key=stranger)], issued_at_ms=2**62)
    forged = sign_push(old_key, push_pb2.Push(channel="global", seq=head, signing_keys=forged_set))
    await online.agent.handle_envelope_bytes(forged.SerializeToString())
    await asyncio.sleep(0.5)
    assert set(online.agent.keys.keys) == {active.key_id, old_id}
    await op.add_ioc("203.0.113.2")  # signed by the new key
    await wait_until(lambda: "203.0.113.2" in online.ioc_values(), within=WAIT)
    assert online.agent.push_stats.rejected == rejected  # nothing was refused along the way
    saved = type(online.agent.identity).load(online.agent.identity.state_dir)
    assert active.key_id in saved.keyring().keys  # kept across restarts

    # The offline agent comes back: the new key's pushes do not verify until GetBrokers gives it the set.
    offline.start()
    await wait_until(lambda: "203.0.113.2" in offline.ioc_values(), within=WAIT)
    assert active.key_id in offline.agent.keys.keys

    # After the overlap, a push the old key signed is refused.
    await asyncio.sleep(max(0.0, (retiring.retires_at_ms - now_ms()) / 1000) + 0.2)
    await online.agent.handle_envelope_bytes(beacon(old_key, head).SerializeToString())
    assert online.agent.push_stats.rejected == rejected + 1
    assert "retired" in online.agent.last_rejection
    listed = await op.call("ListSigningKeys", operator_pb2.ListSigningKeysRequest())
    assert [k.key_id for k in listed.keys if k.active] == [active.key_id]


async def test_rotation_is_refused_while_agents_that_cannot_follow_it_are_enrolled(
    db: Database, tmp_path: Path
) -> None:
    svc = ControllerService(db)
    svc.create_tenant("acme")
    for name, aware in (("new", True), ("old", False)):
        _, secret, _ = svc.add_gateway("acme", name)
        ticket = svc.redeem_enrollment_token(secret)
        svc.complete_enrollment(ticket.gateway_id, cert_serial=f"0{name}", nats_public_key=f"U{name}",
                                agent_version="1", rotation_aware=aware)
    keys = SigningKeys.load_or_create(tmp_path)
    announced: list[common_pb2.SigningKeys] = []

    async def announce(old: Ed25519PrivateKey, keyset: common_pb2.SigningKeys) -> bool:
        announced.append(keyset)
        return True

    rotation = KeyRotation(keys, announce, 60, svc.gateways.unable_to_rotate)
    before = keys.infos()
    with pytest.raises(Conflict, match=r"1 enrolled gateways .*acme/old"):
        await rotation.rotate(60)
    assert keys.infos() == before and not announced and not (tmp_path / NEXT).exists()

    # The old agent reports in after an upgrade: nothing stands in the way any more.
    identity = svc.gateway_identity_by_serial("0old")
    assert identity is not None
    svc.record_statuses([StatusUpdate(gateway_id=identity.gateway_id, applied=Versions(), agent_version="2",
                                      backend="recording", last_error="", seen_at_ms=now_ms(),
                                      rotation_aware=True)])
    assert svc.gateways.unable_to_rotate() == []
    assert await rotation.rotate(60) and len(announced) == 1 and len(keys.infos()) == 2
    svc.revoke_gateway("acme", "new")
    assert await rotation.rotate(60, force=True)  # force skips the check
