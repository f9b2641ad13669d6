"""`msspctl apikey` / `msspctl partner` (issue 10, Keys): the real CLI (main(), in-process) against a
real gRPC server over TLS serving ApiKeyServicer on a real SQLite store, with the operator
credential checked exactly as the controller does."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controller.grpc_api.apikeys import ApiKeyServicer
from controller.grpc_api.operator import token_digest
from controller.pki import CertificateAuthority
from controller.service import ControllerService
from controller.store.db import Database
from mssp.v1 import accounts_pb2_grpc
from tests.support.cli import Invoke, in_process_cli

DAY_MS = 86_400_000


class Served:
    def __init__(self, service: ControllerService, data_dir: Path, token: str) -> None:
        self.service = service
        self.data_dir = data_dir
        self.token = token


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.upgrade()
    service = ControllerService(db)
    data = tmp_path / "data"
    ca = CertificateAuthority.load_or_create(data / "pki")
    key_pem, chain_pem = ca.server_credentials(data / "pki", ["127.0.0.1"])
    token = "mssp_op_" + secrets.token_urlsafe(16)
    (data / "operator.token").write_text(token + "\n")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        servicer = ApiKeyServicer(service, token_digest(token))
        accounts_pb2_grpc.add_ApiKeyServiceServicer_to_server(servicer, server)
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, chain_pem)]))
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    (data / "controller.json").write_text(json.dumps({"grpc": f"127.0.0.1:{port}"}))
    try:
        yield Served(service, data, token)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        db.dispose()


@pytest.fixture
def run(served: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Invoke:
    """msspctl main() with only MSSP_DATA_DIR set; (exit code, stdout, stderr)."""
    return in_process_cli(monkeypatch, capsys, MSSP_DATA_DIR=str(served.data_dir))


def ok_json(result: tuple[int, str, str]) -> dict:  # type: ignore[type-arg]
    code, out, err = result
    assert code == 0, (out, err)
    return json.loads(out)  # type: ignore[no-any-return]


def failed(result: tuple[int, str, str], *needles: str) -> str:
    code, out, err = result
    assert code != 0, out
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_create_prints_the_key_once_and_it_works(run: Invoke, served: Served) -> None:
    served.service.create_tenant("acme")
    created = ok_json(run("apikey", "create", "acme", "-o", "json"))
    key, info = created["key"], created["api_key"]
    assert key.startswith("mssp_tk_") and len(key) == 46 and info["prefix"] == key[:12]
    assert info["scopes"] == ["gateways:read", "usage:read", "reports:read"] and info["state"] == "active"
    assert info["tenant"] == "acme" and info["expires_at_ms"] == 0
    assert served.service.apikeys.authenticate(key).key_id == info["id"]

    code, out, err = run("apikey", "create", "acme", "--scope", "usage:read,reports:read", "--expires", "90d",
                         "--name", "bi")
    assert code == 0, err
    printed = [line for line in out.splitlines() if line.startswith("mssp_tk_")]
    assert len(printed) == 1 and "shown once" in out and "usage:read" in out
    principal = served.service.apikeys.authenticate(printed[0])
    assert principal.scopes == {"usage:read", "reports:read"}
    listed = ok_json(run("apikey", "list", "--tenant", "acme", "-o", "json"))
    assert [k["name"] for k in listed] == ["", "bi"]  # type: ignore[index]
    expires = int(listed[1]["expires_at_ms"])  # type: ignore[index]
    assert abs(expires - (time.time() * 1000 + 90 * DAY_MS)) < 60_000


def test_list_shows_prefixes_never_keys(run: Invoke, served: Served) -> None:
    served.service.create_tenant("acme")
    served.service.create_tenant("globex")
    key_a = ok_json(run("apikey", "create", "acme", "-o", "json"))["key"]
    key_g = ok_json(run("apikey", "create", "globex", "-o", "json"))["key"]
    partner = ok_json(run("partner", "create", "cert-eu", "--expires", "365d", "-o", "json"))
    assert partner["key"].startswith("mssp_pk_") and partner["api_key"]["scopes"] == ["taxii:read"]
    assert partner["api_key"]["kind"] == "partner" and partner["api_key"]["tenant"] == ""
    everything = ok_json(run("apikey", "list", "-o", "json"))
    assert sorted(k["tenant"] for k in everything) == ["", "acme", "globex"]  # type: ignore[index]
    only = ok_json(run("apikey", "list", "--tenant", "globex", "-o", "json"))
    assert [k["tenant"] for k in only] == ["globex"]  # type: ignore[index]
    code, out, err = run("apikey", "list")
    assert code == 0, err
    assert "3 keys" in out and key_a[:12] in out and "cert-eu" in out
    for key in (key_a, key_g, partner["key"]):
        assert key not in out and key[12:] not in out
    failed(run("apikey", "list", "--tenant", "nobody"), "nobody")


def test_revoke_and_rotate(run: Invoke, served: Served) -> None:
    served.service.create_tenant("acme")
    created = ok_json(run("apikey", "create", "acme", "--name", "bi", "-o", "json"))
    old_id, old_key = created["api_key"]["id"], created["key"]
    rotated = ok_json(run("apikey", "rotate", old_id, "--overlap", "1h", "-o", "json"))
    new = rotated["api_key"]
    assert rotated["key"].startswith("mssp_tk_") and rotated["key"] != old_key
    assert rotated["previous"]["replaced_by"] == new["id"] and new["name"] == "bi"
    overlap_end = int(rotated["previous"]["expires_at_ms"])
    assert abs(overlap_end - (time.time() * 1000 + 3_600_000)) < 60_000
    keys = served.service.apikeys
    assert keys.authenticate(old_key).key_id == old_id
    assert keys.authenticate(rotated["key"]).key_id == new["id"]
    failed(run("apikey", "rotate", old_id), "already rotated")

    code, out, err = run("apikey", "rotate", new["id"], "--overlap", "0")
    assert code == 0, err
    newest = [line for line in out.splitlines() if line.startswith("mssp_tk_")]
    assert len(newest) == 1 and "the old key" in out
    assert keys.authenticate(newest[0])

    code, out, err = run("apikey", "revoke", old_id)
    assert code == 0 and f"revoked API key {old_id}" in out, err
    failed(run("apikey", "revoke", old_id), "already revoked")
    failed(run("apikey", "rotate", old_id), old_id)
    revoked = ok_json(run("apikey", "list", "-o", "json"))[0]  # type: ignore[index]
    assert revoked["id"] == old_id and revoked["state"] == "revoked"
    failed(run("apikey", "revoke", "0" * 32), "unknown API key id")


def test_refusals_are_one_line(run: Invoke, served: Served) -> None:
    served.service.create_tenant("acme")
    failed(run("apikey", "create", "acme", "--scope", "usage:read,admin"), "admin", "allowed: gateways:read")
    failed(run("apikey", "create", "acme", "--scope", "taxii:read"), "taxii:read", "partner")
    failed(run("apikey", "create", "acme", "--scope", ","), "--scope")
    failed(run("apikey", "create", "acme", "--expires", "soon"), "--expires")
    failed(run("apikey", "create", "nobody"), "unknown tenant", "nobody")
    failed(run("apikey", "rotate", "abc", "--overlap", "-1h"), "--overlap")
    failed(run("partner", "create", "CERT EU"), "invalid partner name")
    failed(run("apikey", "create", "acme", env={"MSSP_OPERATOR_TOKEN": "mssp_op_wrong"}),
           "operator credential rejected", "MSSP_OPERATOR_TOKEN")
    assert served.service.apikeys.list_keys() == []
    code, out, _err = run("apikey", "--help")
    assert code == 0 and "rotate" in out
