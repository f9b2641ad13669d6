"""Fixture: a real nats-server in operator mode (the controller's embedded broker) in a temp dir.

    async def test_x(nats_broker):
        nc = await nats_broker.connect_controller()
        gw = await nats_broker.connect_gateway("tenantA", "gw1")
        await nats_broker.embedded.restart()   # or .kill() + .start(): an outage

Every client opened through the broker object is closed, the server stopped and the temp dir removed
at teardown, also when the test fails.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient

from controller.nats.auth import (
    NatsIdentity,
    creds_file_text,
    gateway_inbox_prefix,
    new_user_seed,
    public_key_of,
)
from controller.nats.embedded import EmbeddedNats


@dataclass
class NatsBroker:
    identity: NatsIdentity
    embedded: EmbeddedNats
    directory: Path
    clients: list[NatsClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.embedded.url

    def write_creds(self, name: str, text: str) -> Path:
        path = self.directory / f"{name}.creds"
        path.write_text(text)
        path.chmod(0o600)
        return path

    def gateway_creds(self, tenant_id: str, gateway_id: str) -> tuple[Path, str]:
        """A gateway user as enrollment makes it: (creds file, user public key)."""
        seed = new_user_seed()
        public = public_key_of(seed)
        jwt = self.identity.gateway_user_jwt(public, tenant_id, gateway_id)
        return self.write_creds(f"gw-{tenant_id}-{gateway_id}", creds_file_text(jwt, seed)), public

    async def connect(self, creds: Path | None, **options: Any) -> NatsClient:
        """nats.connect with test-friendly defaults (no endless reconnect); closed at teardown."""
        options.setdefault("connect_timeout", 2)
        options.setdefault("max_reconnect_attempts", 2)
        options.setdefault("reconnect_time_wait", 0.2)
        if creds is not None:
            options["user_credentials"] = str(creds)
        nc = await nats.connect(servers=[self.url], **options)
        self.clients.append(nc)
        return nc

    async def connect_controller(self, **options: Any) -> NatsClient:
        return await self.connect(self.write_creds("controller", self.identity.controller_creds()), **options)

    async def connect_system(self, **options: Any) -> NatsClient:
        return await self.connect(self.write_creds("system", self.identity.system_creds()), **options)

    async def connect_gateway(self, tenant_id: str, gateway_id: str, **options: Any) -> NatsClient:
        creds, _ = self.gateway_creds(tenant_id, gateway_id)
        options.setdefault("inbox_prefix", gateway_inbox_prefix(gateway_id))
        return await self.connect(creds, **options)

    async def close_clients(self) -> None:
        for nc in self.clients:
            with contextlib.suppress(Exception):
                await nc.close()
        self.clients.clear()


@pytest.fixture
async def nats_broker() -> AsyncIterator[NatsBroker]:
    directory = Path(tempfile.mkdtemp(prefix="mssp-nats-"))
    try:
        identity = NatsIdentity.load_or_create(directory / "keys")
        embedded = EmbeddedNats(identity, directory / "server")
        broker = NatsBroker(identity=identity, embedded=embedded, directory=directory)
        try:
            await embedded.start()
            yield broker
        finally:
            await broker.close_clients()
            await embedded.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
