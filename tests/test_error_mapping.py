"""The controller's errors reach gRPC clients through one mapping: unary calls and the Sync stream
alike, over a real controller (mTLS, SQLite, an embedded nats-server). A broker failure is
UNAVAILABLE, never a domain refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from controller.domain.errors import (
    AlreadyExists,
    BrokerUnavailable,
    Conflict,
    ControllerError,
    DomainError,
    InvalidInput,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from controller.grpc_api.errors import maps_domain_errors, status_code
from controller.nats.auth import ClaimsUpdateFailed
from controller.ratelimit import RateLimited
from controller.simulation import SimulatedAgent
from mssp.v1 import gateway_pb2, gateway_pb2_grpc, operator_pb2
from tests.support.fleet import RunningController

Code = grpc.StatusCode


def test_one_tree_and_one_code_per_kind() -> None:
    for cls in (InvalidInput, NotFound, AlreadyExists, Conflict, Unauthenticated, RateLimited):
        assert issubclass(cls, DomainError) and issubclass(cls, ControllerError)
    for cls in (BrokerUnavailable, ClaimsUpdateFailed):
        assert issubclass(cls, Unavailable) and not issubclass(cls, DomainError)
    kinds = (InvalidInput, NotFound, AlreadyExists, Conflict, Unauthenticated)
    assert [status_code(kind("x")) for kind in kinds] == [
        Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.ALREADY_EXISTS, Code.FAILED_PRECONDITION,
        Code.UNAUTHENTICATED,
    ]
    assert status_code(RateLimited("x")) == Code.RESOURCE_EXHAUSTED
    # The broker refusing an account update is the broker's failure, not a refused request.
    assert status_code(ClaimsUpdateFailed("x")) == status_code(BrokerUnavailable("x")) == Code.UNAVAILABLE


async def gateway_stub(controller: RunningController, sim: SimulatedAgent) -> tuple[grpc.aio.Channel, Any]:
    ident = sim.agent.identity
    options = [("grpc.ssl_target_name_override", ident.tls_server_name)] if ident.tls_server_name else []
    channel = grpc.aio.secure_channel(controller.app.gateway_address, sim.agent._channel_credentials(),
                                      options=options)
    return channel, gateway_pb2_grpc.GatewayServiceStub(channel)


async def both_refusals(stub: Any) -> tuple[grpc.aio.AioRpcError, grpc.aio.AioRpcError]:
    """The same failure seen by a unary call (ReportStatus) and by the Sync stream."""
    with pytest.raises(grpc.aio.AioRpcError) as unary:
        await stub.ReportStatus(gateway_pb2.StatusReport(), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as stream:
        async for _ in stub.Sync(gateway_pb2.SyncRequest(), timeout=10):
            pass
    return unary.value, stream.value


async def test_unary_calls_and_the_sync_stream_map_errors_the_same_way(
    controller: RunningController, monkeypatch: pytest.MonkeyPatch
) -> None:
    await controller.op.create_tenant("acme")
    sim = await controller.enroll("acme", "gw1", start=False)
    service = controller.app.service
    assert service is not None
    channel, stub = await gateway_stub(controller, sim)
    try:
        async for _ in stub.Sync(gateway_pb2.SyncRequest(), timeout=10):  # enrolled: served
            pass
        real = service.gateway_identity_by_serial

        def failing(exc: Exception) -> Callable[[str], Any]:
            def lookup(serial: str) -> Any:
                raise exc
            return lookup

        # A domain error from the service: the same code and one-line message on both.
        monkeypatch.setattr(service, "gateway_identity_by_serial", failing(NotFound("no row for serial")))
        unary, stream = await both_refusals(stub)
        assert (unary.code(), unary.details()) == (stream.code(), stream.details()) == (
            Code.NOT_FOUND, "no row for serial")
        # An infrastructure failure: UNAVAILABLE on both.
        monkeypatch.setattr(service, "gateway_identity_by_serial", failing(BrokerUnavailable("broker gone")))
        unary, stream = await both_refusals(stub)
        assert (unary.code(), unary.details()) == (stream.code(), stream.details()) == (
            Code.UNAVAILABLE, "broker gone")
        # Anything unexpected: INTERNAL on both (the stream used to end UNKNOWN), details never leaked.
        monkeypatch.setattr(service, "gateway_identity_by_serial", failing(RuntimeError("secret detail")))
        unary, stream = await both_refusals(stub)
        assert (unary.code(), unary.details()) == (stream.code(), stream.details()) == (
            Code.INTERNAL, "internal error (see controller log)")
        # Revoked for real: both refuse it as unauthenticated, in the same words.
        monkeypatch.setattr(service, "gateway_identity_by_serial", real)
        await controller.op.call("RevokeGateway", operator_pb2.GatewayRef(tenant="acme", name="gw1"))
        unary, stream = await both_refusals(stub)
        assert (unary.code(), unary.details()) == (stream.code(), stream.details()) == (
            Code.UNAUTHENTICATED, "gateway certificate is revoked or unknown")
    finally:
        await channel.close()


class BrokerProbe:
    """A servicer whose calls need the broker: a request over the controller's own NATS
    connection, which nobody answers once the broker is gone. Mapped like every servicer."""

    def __init__(self, controller: RunningController) -> None:
        self.controller = controller

    async def _ask(self) -> bytes:
        nc = self.controller.app.nc
        assert nc is not None
        reply = await nc.request("mssp.probe", b"ping", timeout=0.5)
        return reply.data

    @maps_domain_errors
    async def Unary(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await self._ask()

    @maps_domain_errors
    async def Stream(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield await self._ask()


async def test_a_broker_failure_is_unavailable_not_a_refusal(controller: RunningController) -> None:
    probe = BrokerProbe(controller)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Probe", {
        "Unary": grpc.unary_unary_rpc_method_handler(probe.Unary),
        "Stream": grpc.unary_stream_rpc_method_handler(probe.Stream),
    })])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    assert controller.app.embedded_nats is not None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary = channel.unary_unary("/test.Probe/Unary")
            stream = channel.unary_stream("/test.Probe/Stream")
            await controller.app.embedded_nats.kill()
            with pytest.raises(grpc.aio.AioRpcError) as one:
                await unary(b"", timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as many:
                async for _ in stream(b"", timeout=10):
                    pass
            for refused in (one.value, many.value):
                assert refused.code() == Code.UNAVAILABLE, refused
                assert (refused.details() or "").startswith("message broker unavailable: TimeoutError")
        # What an operator call needs of the broker is not refused meanwhile: a revocation commits
        # and is pushed when the broker is back (tests/test_revocation.py); listings never wait for it.
        fleet = await controller.op.fleet()
        assert fleet.total == 0
    finally:
        await server.stop(None)
