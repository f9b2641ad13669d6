"""A large import end to end (issue 11): one transaction, one push that travels in parts under the
broker's payload limit, applied whole by a real agent over a real nats-server; and feed runs that
happen once however many controllers find them due."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlmodel import func, select

from controller.service import ControllerService
from controller.services.intel_import import ImportOptions
from controller.simulation import enroll_agent, wait_until
from controller.store.db import Database
from controller.store.models import PushLog
from mssp.common.channels import GLOBAL_CHANNEL
from mssp.common.parts import MAX_SINGLE_PUSH_BYTES
from tests.support.fleet import RunningController


async def test_a_large_import_reaches_the_agent_as_one_push_in_parts(controller: RunningController) -> None:
    await controller.op.create_tenant("acme")
    # No heartbeat during the test: one that lands between the commit and the apply of 60,000 IOCs
    # sees desired ahead of applied and resyncs (correctly), which is not what is measured here.
    sim = await enroll_agent(controller.op, "acme", "gw0", controller.root / "agents" / "acme-gw0",
                             heartbeat_interval=600.0)
    controller.agents.append(sim)
    await wait_until(lambda: sim.agent.synced.is_set() and sim.agent.nats_connected, within=30)
    svc = controller.app.service
    await asyncio.sleep(0.5)  # let start-up settle (its first sync and status report)
    resyncs = sim.agent.push_stats.resyncs
    data = "".join(f"h{i:06d}.bulk.example\n" for i in range(60_000)).encode()
    result = await asyncio.to_thread(svc.importer.import_feed, data, ImportOptions(fmt="plain"))
    assert result.new == 60_000 and len(result.seqs) == 1
    with svc.db.session(readonly=True) as s:
        size = s.exec(select(func.length(PushLog.payload)).where(
            PushLog.channel == GLOBAL_CHANNEL, PushLog.seq == result.seqs[0])).one()
    assert size > MAX_SINGLE_PUSH_BYTES  # too large for one broker message: it goes in parts
    assert controller.app.publisher is not None
    controller.app.publisher.wake()
    await wait_until(lambda: (GLOBAL_CHANNEL, result.seqs[0]) in sim.applied_at, within=60)
    assert len(sim.ioc_values()) == 60_000
    stats = sim.agent.push_stats
    assert (stats.resyncs, stats.gaps) == (resyncs, 0)  # it came on push, not by a resync


class CountingServer:
    def __init__(self, body: bytes) -> None:
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/list.txt"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def counting() -> Iterator[CountingServer]:
    server = CountingServer(b"198.51.100.31\n198.51.100.32\n")
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_a_due_feed_runs_once_across_controllers(db: Database, counting: CountingServer) -> None:
    replicas = [ControllerService(db) for _ in range(4)]
    replicas[0].feeds.add("list", url=counting.url, fmt="plain", every_seconds=3600)
    barrier = threading.Barrier(len(replicas))
    ran: list[int] = []

    def run(svc: ControllerService) -> None:
        barrier.wait()
        ran.append(svc.run_feeds())

    threads = [threading.Thread(target=run, args=(svc,)) for svc in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(ran) == [0, 0, 0, 1] and counting.hits == 1
    (feed,) = replicas[1].feeds.list()
    assert feed.entries == 2 and feed.next_run_ms > feed.last_run_ms
    assert replicas[2].run_feeds() == 0  # not due again before its period
