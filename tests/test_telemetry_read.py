"""The telemetry read side on SQLite and PostgreSQL: top lists and billing usage from the rollups,
the TelemetryService (operator token) and the msspctl commands over TLS."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import typer
from typer.testing import CliRunner

from controller.cli import telemetry as cli
from controller.cli.client import Options
from controller.domain.errors import InvalidInput, NotFound
from controller.grpc_api.operator import token_digest
from controller.grpc_api.telemetry import TelemetryServicer
from controller.pki import CertificateAuthority
from controller.store.db import Database
from controller.telemetry import queries
from controller.telemetry.ingest import ingest
from mssp.common.metrics import CATEGORY_BYTES, DNS_BLOCKED, DNS_QUERIES, HOST_EGRESS, HOST_FLOWS, IOC_HITS
from mssp.v1 import telemetry_pb2, telemetry_pb2_grpc
from tests.support.telemetry_batches import NOW, TA, TB, make_batch


def test_top_and_usage_read_the_rollups(db: Database) -> None:
    ingest(db, [
        make_batch("gw1", 1, [
            (HOST_EGRESS, "192.0.2.10", 5, 5000, 0), (HOST_FLOWS, "192.0.2.10", 7, 0, 0),
            (DNS_QUERIES, "a.test|192.0.2.10", 0, 0, 9), (DNS_BLOCKED, "bad.test|192.0.2.10", 0, 0, 1),
            (DNS_QUERIES, "bad.test|192.0.2.10", 0, 0, 1), (CATEGORY_BYTES, "ai-tools|192.0.2.10", 2, 300, 0),
        ]),
        make_batch("gw2", 1, [
            (HOST_EGRESS, "192.0.2.10", 1, 9000, 0), (DNS_QUERIES, "a.test|192.0.2.50", 0, 0, 1),
            (CATEGORY_BYTES, "ai-tools|192.0.2.50", 1, 100, 0),
        ]),
        make_batch("gw9", 1, [(HOST_EGRESS, "192.0.2.99", 1, 10**9, 0)], tenant=TB),
    ])
    hosts = queries.top(db, TA, "host", NOW - 3600_000)
    assert [(h.key, h.gateway_id, h.bytes, h.count) for h in hosts] == [
        ("192.0.2.10", "gw2", 9000, 0), ("192.0.2.10", "gw1", 5000, 7),
    ]
    dests = queries.top(db, TA, "destination", NOW - 3600_000)
    assert [(d.key, d.count, d.blocked, len(d.hosts)) for d in dests] == [
        ("a.test", 10, 0, 2), ("bad.test", 1, 1, 1),
    ]
    cats = queries.top(db, TA, "category", NOW - 3600_000, limit=1)
    assert [(c.key, c.bytes, len(c.hosts)) for c in cats] == [("ai-tools", 400, 2)]
    assert queries.top(db, TA, "host", NOW + 2 * 3600_000) == []  # nothing since then
    month = time.strftime("%Y-%m", time.gmtime(NOW / 1000))
    usage = queries.usage(db, TA, month)
    rows = [(g.gateway_id, g.days_online, g.egress_bytes, g.batches, g.online_seconds)
            for g in usage.gateways]
    assert rows == [("gw1", 1, 5000, 1, 30), ("gw2", 1, 9000, 1, 30)]
    assert queries.usage(db, TA, "1999-01").gateways == []


@pytest.mark.parametrize("period", ["2025-13", "2025-1", "25-01", "", "2025-01-01"])
def test_bad_billing_periods_are_refused(period: str) -> None:
    with pytest.raises(InvalidInput):
        queries.parse_period(period)



# ---- read side: TelemetryService and msspctl ---------------------------------------------------

TOKEN = "mssp_op_test-token"


def seed_read_side(db: Database) -> None:
    thresholds = {TA: [("cloud-storage", 100)]}
    ingest(db, [
        make_batch("gw1", 1, [(HOST_EGRESS, "192.0.2.10", 5, 5000, 0),
                              (CATEGORY_BYTES, "cloud-storage|192.0.2.10", 3, 900, 0),
                              (IOC_HITS, "203.0.113.66|192.0.2.10", 2, 120, 0)]),
        make_batch("gw9", 1, [(HOST_EGRESS, "192.0.2.99", 1, 10, 0)], tenant=TB),
    ], lambda t: thresholds.get(t, []))


class Names:
    def __init__(self) -> None:
        self.tenants = {"acme": TA, "globex": TB}

    def resolve(self, name: str) -> str:
        if name not in self.tenants:
            raise NotFound(f"unknown tenant {name!r}")
        return self.tenants[name]

    def tenant_names(self) -> dict[str, str]:
        return {v: k for k, v in self.tenants.items()}

    def gateway_names(self) -> dict[str, str]:
        return {"gw1": "branch-1", "gw9": "hq"}


async def serve_telemetry(db: Database, credentials: Any = None) -> tuple[grpc.aio.Server, str]:
    names = Names()
    server = grpc.aio.server()
    telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(
        TelemetryServicer(db, token_digest(TOKEN), resolve_tenant=names.resolve,
                          tenant_names=names.tenant_names, gateway_names=names.gateway_names),
        server,
    )
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_telemetry_service_needs_the_operator_token_and_answers(db: Database) -> None:
    await asyncio.to_thread(seed_read_side, db)
    server, address = await serve_telemetry(db)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = telemetry_pb2_grpc.TelemetryServiceStub(channel)
            for metadata in ((), (("authorization", "Bearer wrong"),)):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Usage(telemetry_pb2.UsageRequest(tenant="acme"), metadata=metadata, timeout=10)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            auth = (("authorization", f"Bearer {TOKEN}"),)

            top = await stub.Top(telemetry_pb2.TopRequest(tenant="acme"), metadata=auth, timeout=10)
            assert [(e.key, e.gateway, e.bytes) for e in top.entries] == [("192.0.2.10", "branch-1", 5000)]
            usage = await stub.Usage(telemetry_pb2.UsageRequest(tenant="acme"), metadata=auth, timeout=10)
            assert (usage.tenant_id, usage.gateway_days, usage.egress_bytes) == (TA, 1, 5000)
            every = await stub.ListAlerts(telemetry_pb2.ListAlertsRequest(), metadata=auth, timeout=10)
            assert {(a.tenant, a.kind, a.subject) for a in every.alerts} == {
                ("acme", "ioc_hit", "203.0.113.66"), ("acme", "upload_threshold", "cloud-storage"),
            }
            only_b = await stub.ListAlerts(telemetry_pb2.ListAlertsRequest(tenant="globex"), metadata=auth,
                                           timeout=10)
            assert list(only_b.alerts) == []

            invalid = grpc.StatusCode.INVALID_ARGUMENT
            bad = [
                (stub.Top, telemetry_pb2.TopRequest(tenant="nobody"), grpc.StatusCode.NOT_FOUND),
                (stub.Top, telemetry_pb2.TopRequest(tenant="acme", by="color"), invalid),
                (stub.Top, telemetry_pb2.TopRequest(), invalid),
                (stub.Top, telemetry_pb2.TopRequest(tenant="acme", since_seconds=-5), invalid),
                (stub.Usage, telemetry_pb2.UsageRequest(tenant="acme", period="2025-13"), invalid),
                (stub.ListAlerts, telemetry_pb2.ListAlertsRequest(kind="weird"), invalid),
            ]
            for method, request, code in bad:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await method(request, metadata=auth, timeout=10)
                assert info.value.code() == code
    finally:
        await server.stop(None)


async def test_msspctl_telemetry_commands(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commands as registered in msspctl, over TLS with the operator token, against the service."""
    await asyncio.to_thread(seed_read_side, db)
    ca = CertificateAuthority.load_or_create(tmp_path / "pki")
    key_pem, chain_pem = ca.server_credentials(tmp_path / "pki", ["127.0.0.1"])
    server, address = await serve_telemetry(db, grpc.ssl_server_credentials([(key_pem, chain_pem)]))
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    for key, value in {"MSSP_CONTROLLER": address, "MSSP_OPERATOR_TOKEN": TOKEN,
                       "MSSP_CA_CERT": str(tmp_path / "ca.crt"), "MSSP_DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)

    root = typer.Typer()

    @root.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = Options()

    root.add_typer(cli.alerts_app, name="alerts")
    root.add_typer(cli.telemetry_app, name="telemetry")
    root.command("usage")(cli.usage)

    def run(*args: str) -> Any:
        return CliRunner().invoke(root, list(args))

    month = time.strftime("%Y-%m", time.gmtime(NOW / 1000))
    try:
        result = await asyncio.to_thread(run, "usage", "--tenant", "acme", "--period", month, "-o", "json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["egress_bytes"] == 5000  # a number (proto JSON writes a string)
        result = await asyncio.to_thread(run, "telemetry", "top", "--tenant", "acme", "--by", "category",
                                         "--since", "24h", "-o", "json")
        assert result.exit_code == 0, result.output
        assert [e["key"] for e in json.loads(result.output)["entries"]] == ["cloud-storage"]
        result = await asyncio.to_thread(run, "alerts", "list", "-o", "json")
        assert {a["kind"] for a in json.loads(result.output)} == {"ioc_hit", "upload_threshold"}
        result = await asyncio.to_thread(run, "alerts", "list", "--tenant", "acme")
        assert result.exit_code == 0 and "203.0.113.66" in result.output and "branch-1" in result.output
        result = await asyncio.to_thread(run, "telemetry", "top", "--tenant", "acme")
        assert result.exit_code == 0 and "192.0.2.10" in result.output and "5.0 kB" in result.output
        result = await asyncio.to_thread(run, "telemetry", "top", "--tenant", "acme", "--since", "soon")
        assert result.exit_code != 0 and "--since" in str(result.exception)
        result = await asyncio.to_thread(run, "usage", "--tenant", "nobody")
        assert result.exit_code != 0 and "unknown tenant" in str(result.exception)
    finally:
        await server.stop(None)
