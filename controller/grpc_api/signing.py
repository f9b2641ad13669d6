"""The push-signing key calls of OperatorService: list the trusted keys, rotate the active one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.domain.errors import Conflict, Unavailable
from controller.grpc_api.errors import maps_domain_errors
from controller.signing_keys import SigningKeys
from mssp.v1 import common_pb2, operator_pb2


@dataclass(frozen=True)
class KeyRotation:
    keys: SigningKeys
    # Publishes the new set signed by the old key (PushPublisher.announce_keys): True once the broker has it.
    announce: Callable[[Ed25519PrivateKey, common_pb2.SigningKeys], Awaitable[bool]]
    default_overlap_s: int
    # Enrolled gateways whose agents trust one key only (ControllerService.gateways.unable_to_rotate).
    unable: Callable[[], list[str]] = list

    async def rotate(self, overlap_s: int, *, force: bool = False) -> bool:
        """New key written, announced with the old one, then active: whether the broker took the
        announcement (if not, agents pick the set up from GetBrokers when the new key's first push
        fails to verify). Refused, changing nothing, while agents that cannot follow it are enrolled."""
        unable = [] if force else await asyncio.to_thread(self.unable)
        if unable:
            more = f" and {len(unable) - 5} more" if len(unable) > 5 else ""
            raise Conflict(
                f"{len(unable)} enrolled gateways run an agent that trusts one signing key only "
                f"({', '.join(unable[:5])}{more}): after a rotation they would refuse every push; "
                "upgrade them first, or force it")
        old, new = await asyncio.to_thread(self.keys.begin_rotation, overlap_s)
        try:
            return await self.announce(old, self.keys.trusted())
        finally:
            await asyncio.to_thread(self.keys.finish_rotation, new)


def key_list(keys: SigningKeys, *, announced: bool = False) -> operator_pb2.SigningKeyList:
    active = keys.active.public_key().public_bytes_raw().hex()
    return operator_pb2.SigningKeyList(
        keys=[operator_pb2.SigningKeyInfo(key_id=k.key_id, active=k.public_hex == active,
                                          created_at_ms=k.created_at_ms, retires_at_ms=k.retires_at_ms)
              for k in keys.infos()],
        announced=announced,
    )


class SigningKeyCalls:
    """Mixed into OperatorServicer (which authenticates and holds `rotation`)."""

    rotation: KeyRotation | None
    authenticate: Callable[[grpc.aio.ServicerContext], None]

    def _rotation(self) -> KeyRotation:
        if self.rotation is None:
            raise Unavailable("this controller has no push-signing key set")
        return self.rotation

    @maps_domain_errors
    async def ListSigningKeys(
        self, request: operator_pb2.ListSigningKeysRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.SigningKeyList:
        self.authenticate(context)
        return key_list(self._rotation().keys)

    @maps_domain_errors
    async def RotateSigningKey(
        self, request: operator_pb2.RotateSigningKeyRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.SigningKeyList:
        self.authenticate(context)
        rotation = self._rotation()
        overlap = request.overlap_seconds or rotation.default_overlap_s
        announced = await rotation.rotate(overlap, force=request.force)
        return key_list(rotation.keys, announced=announced)
