"""Beacon detection with the kernel in the loop: conntrack events from the router's namespace, real
connections from LAN addresses. A host connecting every 2 s with 5% jitter to one server is reported
as suspected C2; a heartbeat three hosts share, irregular browsing and retries to a dead address are
not."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.simulation import SimulatedAgent, enroll_agent, wait_until
from gateway_agent.backends.nft import NftBackend
from tests.support.fleet import RunningController
from tests.support.netns import C2, CONTROLLER, OTHER, STORAGE, WEB, Topology, missing_requirements

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(missing_requirements() is not None, reason=missing_requirements() or ""),
]

DEAD = "198.51.100.250"  # routed to the WAN, answered by nobody
LAN_HOSTS = ("192.0.2.10", "192.0.2.11", "192.0.2.12")
TRAFFIC = textwrap.dedent(f"""
    import random, socket, sys, threading, time
    stop = time.monotonic() + float(sys.argv[1])
    def connect(src, dst, timeout=1.0):
        try:
            with socket.create_connection((dst, 80), timeout=timeout, source_address=(src, 0)) as s:
                s.sendall(b"x" * 200); s.recv(16)
        except OSError:
            pass
    def every(src, dst, period, jitter, timeout=1.0):
        rng = random.Random(src + dst)
        while time.monotonic() < stop:
            connect(src, dst, timeout)
            time.sleep(period * rng.uniform(1 - jitter, 1 + jitter))
    def browse():
        rng = random.Random(7)
        while time.monotonic() < stop:
            connect("{LAN_HOSTS[0]}", "{WEB}")
            time.sleep(rng.choice([0.2, 0.5, 3.0, 6.0, 1.0, 9.0]))
    jobs = [threading.Thread(target=every, args=("{LAN_HOSTS[0]}", "{OTHER}", 2.0, 0.05))]
    jobs += [threading.Thread(target=every, args=(h, "{STORAGE}", 2.0, 0.05)) for h in {LAN_HOSTS!r}]
    jobs += [threading.Thread(target=browse), threading.Thread(target=every, args=("{LAN_HOSTS[0]}", "{DEAD}",
                                                                                  1.0, 0.0, 0.3))]
    [j.start() for j in jobs]; [j.join() for j in jobs]
""")


@pytest.fixture
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    with Topology.create(tmp_path_factory.mktemp("netns-beacons")) as t:
        for host in LAN_HOSTS[1:]:
            t.exec(t.lan, "ip", "addr", "add", f"{host}/25", "dev", "eth0")
        t.exec(t.gw, "sysctl", "-q", "-w", "net.netfilter.nf_conntrack_acct=1")
        yield t


async def test_a_jittered_beacon_is_suspected_c2_and_shared_heartbeats_are_not(
    controller: RunningController, topo: Topology, tmp_path: Path
) -> None:
    backend = NftBackend(netns=topo.gw, lan_ifaces=["lan0"], wan_ifaces=["wan0"],
                         never_block=[f"{CONTROLLER}:7443"])
    await controller.op.create_tenant("acme")
    sim: SimulatedAgent | None = None
    try:
        sim = await enroll_agent(controller.op, "acme", "gw-nft", tmp_path / "agent", backend=backend,
                                 heartbeat_interval=2.0)
        await wait_until(sim.agent.synced.is_set)
        await controller.op.add_ioc(C2)  # something to enforce: the agent's table (and conntrack) is in
        await wait_until(lambda: not topo.connect(C2, timeout=0.3), within=20)
        traffic = topo.spawn(topo.lan, [sys.executable, "-c", TRAFFIC, "40"])

        async def beacon_sighted() -> bool:
            return any(s.value == OTHER for s in await controller.op.sightings())

        for _ in range(300):  # 60 s at most; the beacon needs about 10 beats (20 s)
            if await beacon_sighted():
                break
            await asyncio.sleep(0.2)
        sightings = {s.value: s for s in await controller.op.sightings()}
        detector = sim.agent.hits.beacons
        assert OTHER in sightings, (f"no beacon sighting; the detector holds {len(detector.pairs)} pairs, "
                                    f"{len(detector.pending)} pending; suspects {detector.suspects()}")
        (where,) = sightings[OTHER].seen_at
        assert (where.host, where.via) == (LAN_HOSTS[0], "beacon")
        traffic.wait(timeout=60)
        await asyncio.sleep(1.0)  # a last poll
        sighted = await controller.op.sightings()
        flagged = {s.value for s in sighted if any(w.via == "beacon" for w in s.seen_at)}
        assert flagged == {OTHER}, flagged  # not the shared heartbeat, not browsing, not the retries
        suspects = {s.destination: s.score for s in sim.agent.hits.beacons.suspects()}
        assert set(suspects) == {OTHER} and 1.8 < suspects[OTHER].median_interval_s < 2.2
    finally:
        if sim is not None:
            await sim.stop()
        backend.remove()
