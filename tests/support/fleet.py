"""Fixtures: an in-process controller (embedded nats-server, SQLite, real gRPC on loopback) and
real agents enrolled against it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controller.app import ControllerApp
from controller.config import Settings
from controller.simulation import OperatorApi, SimulatedAgent, enroll_agent


@dataclass
class RunningController:
    app: ControllerApp
    op: OperatorApi
    root: Path
    agents: list[SimulatedAgent] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.app.settings

    async def enroll(self, tenant: str, name: str, *, start: bool = True) -> SimulatedAgent:
        sim = await enroll_agent(self.op, tenant, name, self.root / "agents" / f"{tenant}-{name}",
                                 heartbeat_interval=2.0, start=start)
        self.agents.append(sim)
        return sim


def controller_settings(root: Path, db_url: str | None = None) -> Settings:
    return Settings(
        data_dir=root / "controller",
        db_url=db_url,
        grpc_listen="127.0.0.1:0",
        gateway_listen="127.0.0.1:0",
        nats_listen="127.0.0.1:0",
        api_listen="127.0.0.1:0",
        beacon_interval_seconds=1.0,
    )


async def start_controller(settings: Settings, root: Path) -> RunningController:
    app = ControllerApp(settings)
    await app.start()
    token = settings.operator_token_file.read_text().strip()
    ca_pem = (settings.pki_dir / "ca.crt").read_bytes()
    return RunningController(app=app, op=OperatorApi(app.grpc_address, ca_pem, token), root=root)


@contextlib.asynccontextmanager
async def running_controller(settings: Settings, root: Path) -> AsyncIterator[RunningController]:
    """A started controller; on exit its agents, client and the controller itself are stopped."""
    ctl = await start_controller(settings, root)
    try:
        yield ctl
    finally:
        for sim in ctl.agents:
            await sim.stop()
        await ctl.op.close()
        await ctl.app.stop()


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[RunningController]:
    async with running_controller(controller_settings(tmp_path), tmp_path) as ctl:
        yield ctl
