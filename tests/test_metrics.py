"""Prometheus metrics of a real controller (embedded nats-server, SQLite, real agents), scraped over
HTTP from its own port and parsed with the client library's parser: pushes and their latency,
the fleet, resyncs, telemetry; off unless asked for; a taken port refuses the start."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.domain.errors import ListenError
from controller.metrics import ControllerMetrics, channel_kind
from controller.metrics.listener import plan_metrics_listen
from controller.simulation import enroll_agent
from gateway_agent.backends.recording import RecordingBackend
from gateway_agent.counters import CounterSample
from mssp.common.metrics import HOST_EGRESS
from tests.support.controller_proc import clean_env, run_msspctl
from tests.support.fleet import controller_settings, running_controller
from tests.support.waiting import eventually

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=30) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


class CountingBackend(RecordingBackend):
    """The recording backend with kernel counters the test sets (telemetry reads them)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.samples: list[CounterSample] = []

    def read_counters(self) -> list[CounterSample]:
        return list(self.samples)


def serving_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "serve_forever" in t.name]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


async def test_pushes_fleet_resyncs_and_telemetry_over_http(tmp_path: Path) -> None:
    settings = controller_settings(tmp_path).model_copy(update={"metrics_listen": "127.0.0.1:0"})
    async with running_controller(settings, tmp_path) as ctl:
        server = ctl.app.metrics_server
        assert server is not None
        url = server.url
        assert url == f"http://127.0.0.1:{server.port}/metrics"
        assert json.loads(settings.runtime_file.read_text())["metrics"] == url
        assert json.loads((settings.data_dir / "listen.json").read_text())["metrics"] == server.port

        first = await asyncio.to_thread(scrape, url)
        assert [v for (name, _), v in first.items() if name == "mssp_build_info"] == [1]
        assert value(first, "mssp_gateways_connected") == 0
        assert value(first, "mssp_gateways_converged_ratio") == 1  # nothing enrolled: nothing behind

        await ctl.op.create_tenant("acme")
        backend = CountingBackend(tmp_path / "edge1-kernel")
        running = await enroll_agent(ctl.op, "acme", "edge1", tmp_path / "agents" / "edge1",
                                     heartbeat_interval=2.0, backend=backend)
        ctl.agents.append(running)
        await eventually(lambda: running.agent.nats_connected)
        before = await asyncio.to_thread(scrape, url)
        pushed = value(before, "mssp_pushes_published_total", channel="global")
        timed = value(before, "mssp_push_publish_latency_seconds_count", channel="global")

        await ctl.op.add_ioc("198.51.100.7")
        await eventually(lambda: "198.51.100.7" in running.ioc_values())

        async def fleet_settled() -> bool:
            fleet = await ctl.op.fleet("acme")
            return fleet.converged == 1 and fleet.online == 1

        await eventually(fleet_settled)
        after = await asyncio.to_thread(scrape, url)
        assert value(after, "mssp_pushes_published_total", channel="global") >= pushed + 1
        assert value(after, "mssp_push_publish_latency_seconds_count", channel="global") >= timed + 1
        assert value(after, "mssp_push_publish_latency_seconds_bucket", channel="global", le="+Inf") == \
            value(after, "mssp_push_publish_latency_seconds_count", channel="global")
        assert value(after, "mssp_push_publish_errors_total", reason="unpublishable") == 0
        assert value(after, "mssp_gateways", status="enrolled") == 1
        assert value(after, "mssp_gateways_connected") == 1
        assert value(after, "mssp_gateways_converged") == 1
        assert value(after, "mssp_gateways_converged_ratio") == 1
        assert value(after, "mssp_resyncs_total") >= 1  # the running agent's start-up Sync
        assert ("mssp_telemetry_consumer_lag", ()) in after  # asked on the loop from the scrape thread

        assert running.agent.telemetry is not None
        records = value(after, "mssp_telemetry_records_total")
        batches = value(after, "mssp_telemetry_batches_total")
        backend.samples = [CounterSample(HOST_EGRESS, "192.0.2.10", 3, 1500)]
        await running.agent.telemetry.tick()

        async def ingested() -> bool:
            now = await asyncio.to_thread(scrape, url)
            return (value(now, "mssp_telemetry_batches_total") > batches
                    and value(now, "mssp_telemetry_records_total") > records)

        await eventually(ingested)

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ctl.op.fleet("no-such-tenant")
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        errors = await asyncio.to_thread(scrape, url)
        assert ("mssp_grpc_errors_total", (("code", "NOT_FOUND"), ("server", "api"))) not in after
        assert value(errors, "mssp_grpc_errors_total", server="api", code="NOT_FOUND") == 1

        await ctl.op.add_gateway("acme", "edge2")  # not enrolled yet: pending, not in the ratio
        pending = await asyncio.to_thread(scrape, url)
        assert value(pending, "mssp_gateways", status="pending") == 1
        assert value(pending, "mssp_gateways_converged_ratio") == 1
        await ctl.enroll("acme", "edge3", start=False)  # enrolled, never runs: never converges
        behind = await asyncio.to_thread(scrape, url)
        assert value(behind, "mssp_gateways", status="enrolled") == 2
        assert value(behind, "mssp_gateways_converged") == 1
        assert value(behind, "mssp_gateways_converged_ratio") == 0.5
    assert ctl.app.metrics_server is None
    assert not serving_threads()


async def test_off_by_default(tmp_path: Path) -> None:
    settings = controller_settings(tmp_path)
    assert settings.metrics_listen == ""
    async with running_controller(settings, tmp_path) as ctl:
        assert ctl.app.metrics_server is None
        assert not serving_threads()
        assert json.loads(settings.runtime_file.read_text())["metrics"] == ""
        assert "metrics" not in json.loads((settings.data_dir / "listen.json").read_text())


def test_a_taken_port_refuses_the_start(tmp_path: Path, taken_port: int) -> None:
    data = tmp_path / "data"
    result = run_msspctl("server", "run", "--data-dir", str(data), "--grpc-listen", "127.0.0.1:0",
                         "--gateway-listen", "127.0.0.1:0", "--api-listen", "off",
                         "--metrics-listen", f"127.0.0.1:{taken_port}", env=clean_env(), timeout=90)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{taken_port} (metrics)" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (data / "controller.json").exists()


@pytest.mark.parametrize("listen", ["9464", "127.0.0.1:", ":9464", "127.0.0.1:65536", "127.0.0.1:http"])
def test_malformed_addresses_are_refused(listen: str) -> None:
    with pytest.raises(ListenError, match="not HOST:PORT"):
        plan_metrics_listen(listen)


@pytest.mark.parametrize("listen", ["", " ", "off", "OFF"])
def test_off_values(listen: str) -> None:
    assert plan_metrics_listen(listen) is None


def test_registries_are_per_controller_and_channel_kinds_bounded() -> None:
    one, two = ControllerMetrics(), ControllerMetrics()
    one.published([("tenant:t-1", 0), ("tenant:t-2", 0), ("alliance", 0)])
    assert one.registry.get_sample_value("mssp_pushes_published_total", {"channel": "tenant"}) == 2
    assert two.registry.get_sample_value("mssp_pushes_published_total", {"channel": "tenant"}) == 0
    assert {channel_kind(c) for c in ("global", "alliance", "tenant:x")} == {"global", "alliance", "tenant"}
