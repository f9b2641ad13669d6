"""The tenant API's listener: real uvicorn over real sockets (plain and TLS), the refusal to serve
keys in clear on a non-loopback address, port 0 and bind failures, and the API inside a running
ControllerApp (controller.json, listen.json)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from pathlib import Path

import httpx
import pytest

from controller.api.app import create_app
from controller.api.server import ApiServer, ListenPlan, plan_listen, start_api
from controller.config import Settings
from controller.domain.errors import ListenError
from controller.listen_state import LISTEN_FILE, ListenState
from controller.pki import CertificateAuthority
from controller.store.db import Database
from tests.support.fleet import RunningController
from tests.support.tenant_api import A, World, build_world


@pytest.fixture
def world(tmp_path: Path) -> World:
    database = Database(f"sqlite:///{tmp_path / 'api.db'}")
    database.upgrade()
    return build_world(database, tmp_path)


def test_non_loopback_without_tls_is_refused_unless_insecure_http(tmp_path: Path) -> None:
    for listen in ("192.0.2.10:8443", "0.0.0.0:8080", "[2001:db8::1]:8080", "[::]:8080"):
        with pytest.raises(ListenError, match=r"without TLS.*--api-insecure-http"):
            plan_listen(listen, None, None, False)
        assert plan_listen(listen, None, None, True) is not None
        assert plan_listen(listen, tmp_path / "c.pem", tmp_path / "k.pem", False).tls  # type: ignore[union-attr]
    for loopback in ("127.0.0.1:0", "localhost:8080", "[::1]:8080", "127.0.0.2:1"):
        assert plan_listen(loopback, None, None, False) is not None
    assert plan_listen("off", None, None, False) is None
    with pytest.raises(ListenError, match="both"):
        plan_listen("127.0.0.1:0", tmp_path / "c.pem", None, False)
    for bad in ("8080", "127.0.0.1:http", "127.0.0.1:70000", ":8080"):
        with pytest.raises(ListenError, match="HOST:PORT"):
            plan_listen(bad, None, None, False)


async def test_controller_settings_refuse_before_binding(world: World, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", api_listen="192.0.2.10:8080")
    with pytest.raises(ListenError, match="without TLS"):
        await start_api(settings, world.service, ListenState(tmp_path / "d"))
    off = Settings(data_dir=tmp_path / "d", api_listen="off")
    assert await start_api(off, world.service, ListenState(tmp_path / "d")) is None


async def test_report_warm_up_loads_the_pdf_stack_and_stops_cleanly(world: World, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", api_listen="127.0.0.1:0", api_warm_reports=True,
                        api_warm_reports_after_seconds=0)
    server = await start_api(settings, world.service, ListenState(tmp_path / "d"))
    assert server is not None and server.warm_up is not None
    try:
        assert await server.warm_up is True, "the warm-up failed (see the log)"
    finally:
        await server.stop()
    assert server.warm_up is None
    off = Settings(data_dir=tmp_path / "e", api_listen="127.0.0.1:0", api_warm_reports=False)
    cold = await start_api(off, world.service, ListenState(tmp_path / "e"))
    assert cold is not None and cold.warm_up is None
    await cold.stop()
    later = Settings(data_dir=tmp_path / "f", api_listen="127.0.0.1:0", api_warm_reports=True,
                     api_warm_reports_after_seconds=3600)
    waiting = await start_api(later, world.service, ListenState(tmp_path / "f"))
    assert waiting is not None and waiting.warm_up is not None
    task = waiting.warm_up
    await asyncio.wait_for(waiting.stop(), 30)  # a warm-up still waiting is cancelled, not awaited
    assert task.cancelled() and waiting.warm_up is None


async def test_real_server_on_a_free_port_and_a_taken_one(world: World) -> None:
    server = ApiServer(create_app(world.service), ListenPlan("127.0.0.1", 0, tls=False))
    address = await server.start()
    try:
        assert server.port > 0 and address == f"127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            resp = await client.get("/v1/tenant", headers=world.auth(A))
            assert resp.status_code == 200 and resp.json()["name"] == A
            assert resp.headers["ratelimit-policy"] == '"default";q=600;w=60'
            denied = await client.get("/v1/tenant")
            assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Bearer")
            assert (await client.get("/openapi.json")).status_code == 200
            # A kept-alive connection must not wait for delayed ACKs (Nagle): ~40 ms per response.
            assert server._server is not None
            (conn,) = server._server.server_state.connections
            accepted = conn.transport.get_extra_info("socket")
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        second = ApiServer(create_app(world.service), ListenPlan("127.0.0.1", server.port, tls=False))
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{server.port}"):
            await second.start()
    finally:
        await server.stop()
    with socket.socket() as probe:  # stopped: the port is free again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", server.port))


async def test_tls_server(world: World, tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "pki")
    key_pem, chain_pem = ca.server_credentials(tmp_path / "pki", ["127.0.0.1"])
    cert, key = tmp_path / "api.crt", tmp_path / "api.key"
    cert.write_bytes(chain_pem)
    key.write_bytes(key_pem)
    plan = plan_listen("127.0.0.1:0", cert, key, False)
    assert plan is not None and plan.tls
    server = ApiServer(create_app(world.service), plan, tls_cert=cert, tls_key=key)
    await server.start()
    try:
        assert server.url.startswith("https://")
        verify = ssl.create_default_context(cadata=ca.cert_pem.decode())
        async with httpx.AsyncClient(base_url=server.url, verify=verify, timeout=10) as client:
            resp = await client.get("/v1/gateways", headers=world.auth(A))
            assert resp.status_code == 200 and len(resp.json()["items"]) == 3
        async with httpx.AsyncClient(base_url=server.url.replace("https", "http"), timeout=10) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get("/v1/tenant")
    finally:
        await server.stop()
    broken = ApiServer(create_app(world.service), plan, tls_cert=tmp_path / "missing.crt", tls_key=key)
    with pytest.raises(ListenError, match="TLS"):
        await broken.start()


async def test_inside_the_controller(controller: RunningController) -> None:
    app = controller.app
    assert app.api is not None
    runtime = json.loads(app.settings.runtime_file.read_text())
    assert runtime["api"] == app.api.url and app.api.url.startswith("http://127.0.0.1:")
    kept = json.loads((app.settings.data_dir / LISTEN_FILE).read_text())
    assert kept["api"] == app.api.port
    await controller.op.create_tenant(A)
    assert app.service is not None and hasattr(app.service, "apikeys"), "the controller wires its API keys"
    secret = app.service.apikeys.create(A)[1]
    async with httpx.AsyncClient(base_url=app.api.url, timeout=10) as client:
        resp = await client.get("/v1/tenant", headers={"Authorization": f"Bearer {secret}"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["name"] == A and resp.json()["gateway_count"] == 0
