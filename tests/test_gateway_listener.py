"""The gateway listener's client CAs are fixed credentials, rebuilt on the same port when a CA
rollover begins (controller/grpc_api/gateway_listener.py), and the rollover announcement waits for
the rebuilt listener (controller/ca_announce.py). Real gRPC over loopback, real certificates."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from controller.ca_announce import CaAnnouncer
from controller.ca_set import CaSet
from controller.grpc_api.gateway_listener import GatewayListener
from controller.pki import CertificateAuthority
from controller.signing_keys import SigningKeys
from gateway_agent.identity import make_tls_key_and_csr
from mssp.v1 import common_pb2


def client_of(ca: CertificateAuthority | CaSet) -> tuple[bytes, bytes]:
    key, csr = make_tls_key_and_csr()
    return key, ca.sign_gateway_csr(csr, tenant_id="t-1", gateway_id="g-1").cert_pem


async def health_with(port: int, client: tuple[bytes, bytes], root: bytes) -> grpc.StatusCode:
    key, cert = client
    creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=cert)
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def serve_health(server: grpc.aio.Server) -> None:
    servicer = health.aio.HealthServicer()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)


async def test_a_rollover_rebuilds_the_listener_on_its_port_trusting_both_cas(tmp_path: Path) -> None:
    cas = CaSet.load_or_create(tmp_path / "pki")
    key_pem, chain_pem = cas.server_credentials(tmp_path / "pki", ["127.0.0.1"])
    root = cas.cert_pem
    listener = GatewayListener("127.0.0.1", cas, key_pem, chain_pem, what="gateway API", options=[],
                               interceptors=[])
    port = listener.bind(0)
    await listener.start(serve_health)
    try:
        old_client = client_of(cas.current)
        assert await health_with(port, old_client, root) == grpc.StatusCode.OK
        await listener.reload()  # nothing changed: the same server keeps serving
        first = listener.server
        assert listener.generation == cas.generation

        cas.begin_rollover(60)
        assert cas.next is not None
        new_client = client_of(cas.next)
        assert await health_with(port, new_client, root) == grpc.StatusCode.UNAVAILABLE  # not yet
        assert listener.generation != cas.generation
        await listener.reload()
        assert listener.server is not first and listener.port == port
        assert listener.generation == cas.generation
        assert await health_with(port, new_client, root) == grpc.StatusCode.OK
        assert await health_with(port, old_client, root) == grpc.StatusCode.OK  # the overlap
        stranger = client_of(CertificateAuthority.load_or_create(tmp_path / "other", "ca", "other CA"))
        assert await health_with(port, stranger, root) == grpc.StatusCode.UNAVAILABLE
    finally:
        await listener.stop()
    assert listener.server is None


async def test_the_rollover_is_announced_only_once_the_listener_trusts_the_next_ca(tmp_path: Path) -> None:
    cas = CaSet.load_or_create(tmp_path / "pki")
    served = [cas.generation]
    sent: list[common_pb2.SigningKeys] = []

    async def announce(_key: object, keys: common_pb2.SigningKeys) -> bool:
        sent.append(keys)
        return True

    announcer = CaAnnouncer(cas, SigningKeys.load_or_create(tmp_path / "pki"), announce,  # type: ignore[arg-type]
                            served=lambda: served[0])
    announcer.start()
    try:
        cas.begin_rollover(60)
        await asyncio.sleep(2.5)  # more than two of its polls
        assert sent == []  # agents asking GetBrokers now would meet the old listener
        served[0] = cas.generation
        for _ in range(100):
            if sent:
                break
            await asyncio.sleep(0.1)
        assert len(sent) == 1
    finally:
        await announcer.stop()
