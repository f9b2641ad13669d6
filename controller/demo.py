"""`make demo`: the whole product on one machine, start to finish, in well under a minute.

Starts the controller on embedded defaults (SQLite, nats-server child process) in a temporary data
dir, enrolls real agents (recording backend) for three tenants in the alliance, pushes a policy, a
global and a tenant IOC, lets one gateway hit a tenant's own high-confidence indicator (herd
immunity: promoted and enforced by every other tenant's gateways, timed from the hit), shows the
fleet converging with the measured propagation times, and shuts everything down.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from controller.app import ControllerApp
from controller.config import Settings
from controller.simulation import OperatorApi, SimulatedAgent, enroll_agent, percentiles, wait_until
from mssp.common.channels import ALLIANCE_CHANNEL
from mssp.v1 import common_pb2, operator_pb2

TENANTS = ("acme", "globex", "initech")
C2 = "203.0.113.50"
AGENTS_PER_TENANT = 10
DEMO_POLICY = """\
default_action: allow
rules:
  - name: no-ai-uploads
    action: deny
    categories: [ai_tools]
  - name: block-smb-out
    action: deny
    protocol: tcp
    ports: [445]
upload_thresholds:
  - category: cloud_storage
    max_per_day: 500MB
"""


async def timed_push(
    agents: list[SimulatedAgent], channel_of: dict[str, str], push: Callable[[], Awaitable[Any]]
) -> list[float]:
    """Run one operator change and return per-agent milliseconds until each applied it."""
    started = time.monotonic()
    info = await push()
    seq = info.seq
    keys = {a.label: (channel_of[a.label], seq) for a in agents}
    await wait_until(lambda: all(keys[a.label] in a.applied_at for a in agents), within=30)
    return [(a.applied_at[keys[a.label]] - started) * 1000 for a in agents]


def summary(ms: list[float]) -> str:
    p = percentiles(ms)
    return f"{len(ms)} agents, p50 {p['p50']:.0f} ms, p95 {p['p95']:.0f} ms, max {p['max']:.0f} ms"


async def run(console: Console) -> None:
    with tempfile.TemporaryDirectory(prefix="mssp-demo-") as tmp:
        root = Path(tmp)
        settings = Settings(
            data_dir=root / "controller",
            grpc_listen="127.0.0.1:0",
            gateway_listen="127.0.0.1:0",
            nats_listen="127.0.0.1:0",
            api_listen="127.0.0.1:0",
        )
        app = ControllerApp(settings)
        agents: list[SimulatedAgent] = []
        op: OperatorApi | None = None
        try:
            t0 = time.monotonic()
            await app.start()
            console.print(f"[bold]controller[/] up in {time.monotonic() - t0:.1f}s: api {app.grpc_address}, "
                          f"gateways {app.gateway_address}, nats {app.nats_urls[0]} (embedded), SQLite")
            op = OperatorApi(app.grpc_address, (settings.pki_dir / "ca.crt").read_bytes(),
                             settings.operator_token_file.read_text().strip())
            tenant_ids = {}
            for name in TENANTS:
                tenant_ids[name] = (await op.create_tenant(name)).id
                await op.set_sharing(name, True)
            t0 = time.monotonic()
            for name in TENANTS:
                for i in range(AGENTS_PER_TENANT):
                    state_dir = root / "agents" / f"{name}-{i:02d}"
                    agents.append(await enroll_agent(op, name, f"gw-{i:02d}", state_dir))
            await wait_until(lambda: all(a.agent.synced.is_set() for a in agents), within=30)
            console.print(f"enrolled and synced {len(agents)} agents (mTLS certificates, scoped NATS "
                          f"credentials) in {time.monotonic() - t0:.1f}s")

            tenant_channel = {a.label: f"tenant:{tenant_ids[a.agent.identity.tenant_name]}" for a in agents}
            global_channel = {a.label: "global" for a in agents}
            acme = [a for a in agents if a.agent.identity.tenant_name == "acme"]

            ms = await timed_push(acme, tenant_channel, lambda: op.set_policy("acme", DEMO_POLICY))
            console.print(f"policy for acme applied: {summary(ms)}")
            ms = await timed_push(agents, global_channel, lambda: op.add_ioc("198.51.100.66", "global"))
            console.print(f"global IOC 198.51.100.66 applied: {summary(ms)}")
            ms = await timed_push(acme, tenant_channel,
                                  lambda: op.add_ioc("c2.evil.example", "tenant:acme", ttl_seconds=86400))
            console.print(f"tenant IOC c2.evil.example (acme only) applied: {summary(ms)}")
            globex_leak = [a.label for a in agents if a not in acme and "c2.evil.example" in a.ioc_values()]
            console.print(f"globex gateways holding acme's IOC: {len(globex_leak)}")

            await herd_immunity(console, op, agents, acme[0])

            for a in agents:  # report now rather than at the next heartbeat
                await a.agent.report()
            fleet = await op.fleet()
            deadline = time.monotonic() + 5.0  # reports are written in batches every 0.25 s
            while fleet.converged < fleet.total and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                fleet = await op.fleet()
            table = Table(title="fleet status")
            for col in ("tenant", "gateway", "online", "desired", "applied", "converged", "IOCs", "policy"):
                table.add_column(col)
            by_label = {a.label: a for a in agents}
            for g in fleet.gateways:
                sim = by_label[f"{g.tenant}/{g.name}"]
                table.add_row(
                    g.tenant, g.name, "yes" if g.online else "no",
                    f"t{g.desired.tenant_seq}/g{g.desired.global_seq}/a{g.desired.alliance_seq}",
                    f"t{g.applied.tenant_seq}/g{g.applied.global_seq}/a{g.applied.alliance_seq}",
                    "[green]yes[/]" if g.converged else "[red]no[/]",
                    str(len(sim.ioc_values())), f"v{sim.agent.state.policy.version}",
                )
            console.print(table)
            console.print(f"{fleet.total} gateways, {fleet.online} online, {fleet.converged} converged")
        finally:
            for a in agents:
                await a.stop()
            if op is not None:
                await op.close()
            await app.stop()
    console.print("demo finished; controller, nats-server and agents stopped, temporary data removed")


async def herd_immunity(console: Console, op: OperatorApi, agents: list[SimulatedAgent],
                        hit_at: SimulatedAgent) -> None:
    """acme's own feed says C2 at confidence 95; one of its gateways hits it: the fast tier promotes
    it on that one sighting and every gateway of the alliance enforces it."""
    await op.call("AddIoc", operator_pb2.AddIocRequest(value=C2, scope="tenant:acme", source="acme-intel",
                                                       confidence=95, has_confidence=True))
    await wait_until(lambda: C2 in hit_at.ioc_values(), within=30)
    backend = hit_at.recording()
    key = (common_pb2.IOC_TYPE_IPV4, C2)
    started = time.monotonic()
    backend.record_hit(C2, "192.0.2.10")  # what the kernel's hit set would show
    arrived: dict[str, float] = {}

    def everywhere() -> bool:
        for a in agents:
            ch = a.agent.state.channels.get(ALLIANCE_CHANNEL)
            if a.label not in arrived and ch is not None and key in ch.iocs:
                arrived[a.label] = time.monotonic()
        return len(arrived) == len(agents)

    await wait_until(everywhere, within=30, interval=0.005)
    ms = [(t - started) * 1000 for t in arrived.values()]
    (promoted,) = await op.sightings("promoted")
    console.print(f"herd immunity: {hit_at.label} hit {C2}; promoted ({promoted.reason}) and enforced by "
                  f"every gateway of the alliance: {summary(ms)} from the hit (none of them learns who)")


def run_demo() -> None:
    asyncio.run(run(Console()))
