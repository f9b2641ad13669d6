"""The tenant API over HTTP (in-process ASGI client): the endpoints, CSV, keys and scopes, one
problem+json body for every error class, size limits, pagination and the rate limit."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.api.limits import ApiLimits
from controller.domain.errors import Unavailable
from controller.domain.names import DEFAULT_PLAN
from controller.store.db import Database
from tests.support.tenant_api import BATCHES, NAMES, PERIOD, A, B, World, build_world

PROBLEM_KEYS = {"type", "title", "status", "detail"}


@pytest.fixture
def world(db: Database, tmp_path: Path) -> World:
    return build_world(db, tmp_path)


def assert_problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert PROBLEM_KEYS <= set(body) and body["status"] == status
    assert body["type"].startswith("urn:mssp:problem:") and body["title"] and body["detail"]
    return body  # type: ignore[no-any-return]


def walk(client: Any, path: str, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        resp = client.get(path, headers=headers, params={**params, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            assert "link" not in resp.headers
            return items
        assert 'rel="next"' in resp.headers["link"]
    raise AssertionError("pagination never ended")


# -- endpoints ---------------------------------------------------------------------------------


def test_tenant_and_gateways(world: World) -> None:
    client = world.client()
    tenant = client.get("/v1/tenant", headers=world.auth(A)).json()
    assert tenant == {"id": world.tenant_ids[A], "name": A, "plan": DEFAULT_PLAN, "gateway_count": 3,
                      "sharing": "none"}
    page = client.get("/v1/gateways", headers=world.auth(A), params={"period": PERIOD}).json()
    assert [g["name"] for g in page["items"]] == sorted(NAMES) and page["next_cursor"] is None
    first = page["items"][0]
    assert first["status"] == "pending" and first["converged"] is False and first["online"] is False
    assert first["online_seconds"] == BATCHES * 30 and first["period"] == PERIOD
    one = client.get(f"/v1/gateways/{first['id']}", headers=world.auth(A), params={"period": PERIOD})
    assert one.status_code == 200 and one.json() == first
    other_month = client.get(f"/v1/gateways/{first['id']}", headers=world.auth(A),
                             params={"period": "2001-01"})
    assert other_month.json()["online_seconds"] == 0


def test_gateways_and_alerts_as_csv(world: World) -> None:
    client = world.client()
    resp = client.get("/v1/gateways", headers={**world.auth(A), "Accept": "text/csv"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [r["name"] for r in rows] == sorted(NAMES) and rows[0]["converged"] == "false"
    alerts = client.get("/v1/alerts", headers={**world.auth(A), "Accept": "text/csv, application/json;q=0.5"})
    rows = list(csv.DictReader(io.StringIO(alerts.text)))
    assert rows and {r["kind"] for r in rows} <= {"ioc_hit", "upload_threshold"}
    assert {r["gateway"] for r in rows} <= set(NAMES)
    json_alerts = client.get("/v1/alerts", headers=world.auth(A)).json()["items"]
    assert [a["id"] for a in json_alerts] == [r["id"] for r in rows]


def test_usage_security_and_monthly(world: World) -> None:
    client = world.client()
    usage = client.get("/v1/usage", headers=world.auth(A), params={"period": PERIOD})
    assert usage.status_code == 200, usage.text
    body = usage.json()
    assert body["tenant"] == A and body["period"] == PERIOD and body["gateway_days"] == 3
    assert isinstance(body["total"], str) and all(isinstance(line["amount"], str) for line in body["lines"])
    assert body["egress_bytes"] == sum(d["egress_bytes"] for d in body["daily"])
    daily = client.get("/v1/usage", headers={**world.auth(A), "Accept": "text/csv"},
                       params={"period": PERIOD})
    assert daily.text.splitlines()[0] == "day,gateways_online,egress_bytes"
    report = client.get("/v1/reports/security", headers=world.auth(A), params={"period": PERIOD})
    assert report.status_code == 200, report.text
    assert report.json()["tenant"] == A and report.json()["ioc_hits"]
    table = client.get("/v1/reports/security", headers={**world.auth(A), "Accept": "text/csv"},
                       params={"period": PERIOD, "table": "ioc_hits"})
    assert table.text.splitlines()[0] == "indicator,hits,bytes,hosts,thanks_to_alliance"
    assert "203.0.113.50" in table.text
    html = client.get("/v1/reports/monthly", headers=world.auth(A), params={"period": PERIOD})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    pdf = client.get("/v1/reports/monthly", headers=world.auth(A), params={"period": PERIOD, "format": "pdf"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


# -- keys and scopes ---------------------------------------------------------------------------


def test_missing_malformed_unknown_revoked_keys_are_401(world: World) -> None:
    client = world.client()
    info, secret = world.service.apikeys.create(A)  # type: ignore[attr-defined]
    assert client.get("/v1/tenant", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    world.service.apikeys.revoke(info.id)  # type: ignore[attr-defined]
    wrong_checksum = secret[:-1] + ("a" if secret[-1] != "a" else "b")
    cases = [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"},
             {"Authorization": "Bearer not-a-key"}, {"Authorization": f"Bearer {wrong_checksum}"},
             {"Authorization": f"Bearer {secret}"}, {"Authorization": "Bearer " + "x" * 300}]
    for headers in cases:
        resp = client.get("/v1/gateways", headers=headers)
        body = assert_problem(resp, 401)
        assert resp.headers["www-authenticate"].startswith("Bearer"), headers
        assert secret not in body["detail"]


def test_expired_key_is_401(world: World) -> None:
    client = world.client()
    old = world.service.apikeys.create(A)  # type: ignore[attr-defined]
    _new, secret_new, _old = world.service.apikeys.rotate(old[0].id, 0)  # type: ignore[attr-defined]
    time.sleep(0.01)  # overlap 0: the old key expired at the rotation
    assert client.get("/v1/tenant", headers={"Authorization": f"Bearer {secret_new}"}).status_code == 200
    assert_problem(client.get("/v1/tenant", headers={"Authorization": f"Bearer {old[1]}"}), 401)


def test_missing_scope_and_partner_keys_are_403(world: World) -> None:
    client = world.client()
    usage_only = world.service.apikeys.create(A, scopes=["usage:read"])[1]  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {usage_only}"}
    for path in ("/v1/tenant", "/v1/gateways", "/v1/alerts", "/v1/reports/security", "/v1/reports/monthly"):
        body = assert_problem(client.get(path, headers=headers), 403)
        assert "scope" in body["detail"]
    assert client.get("/v1/usage", headers=headers).status_code == 200
    partner = world.service.apikeys.create_partner("cert-eu")[1]  # type: ignore[attr-defined]
    for path in ("/v1/tenant", "/v1/gateways", "/v1/usage"):
        assert_problem(client.get(path, headers={"Authorization": f"Bearer {partner}"}), 403)


# -- one error body ----------------------------------------------------------------------------


def test_every_error_class_is_problem_json(world: World) -> None:
    client = world.client()
    auth = world.auth(A)
    assert_problem(client.get("/v1/nothing-here", headers=auth), 404)
    assert_problem(client.get("/nothing"), 404)
    resp = client.post("/v1/gateways", headers=auth)
    assert_problem(resp, 405)
    assert "GET" in resp.headers["allow"]
    assert_problem(client.get("/v1/gateways", headers=auth, params={"limit": 0}), 422)
    assert_problem(client.get("/v1/gateways", headers=auth, params={"period": "2025-13"}), 422)
    body = assert_problem(client.get("/v1/alerts", headers=auth, params={"since": "yesterday"}), 422)
    assert "yesterday" not in body["detail"]  # never echoes the input
    assert_problem(client.get("/v1/gateways", headers=auth, params={"cursor": "bm9wZQ"}), 400)
    body = assert_problem(client.get("/v1/usage", headers=auth, params={"perod": "2025-01"}), 400)
    assert "perod" in body["detail"]
    assert_problem(client.get("/v1/gateways/" + "f" * 32, headers=auth), 404)
    assert_problem(client.get("/v1/gateways", headers=auth, params={"q": "x" * 3000}), 414)
    assert_problem(client.get("/v1/tenant", headers={**auth, "X-Filler": "y" * 20_000}), 431)
    assert_problem(client.request("GET", "/v1/tenant", headers={**auth, "Content-Length": "100000"},
                                  content=b"z" * 100_000), 413)


def test_internal_and_dependency_errors_leak_nothing(world: World) -> None:
    class Broken:
        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        def usage(self, tenant_id: str, period: str) -> None:
            raise self.exc

    world.service.billing = Broken(RuntimeError("password=hunter2 at /srv/secret.py"))  # type: ignore[assignment]
    client = world.client(raise_server_exceptions=False)
    body = assert_problem(client.get("/v1/usage", headers=world.auth(A)), 500)
    assert "hunter2" not in body["detail"] and "secret" not in body["detail"]
    world.service.billing = Broken(Unavailable("database is down"))  # type: ignore[assignment]
    resp = client.get("/v1/usage", headers=world.auth(A))
    assert_problem(resp, 503)
    assert resp.headers["retry-after"]


# -- pagination --------------------------------------------------------------------------------


def test_pagination_walks_every_row_once_over_ties(world: World) -> None:
    client = world.client()
    everything = client.get("/v1/alerts", headers=world.auth(A), params={"limit": 500}).json()["items"]
    at = [a["at_ms"] for a in everything]
    assert len(at) > len(set(at)), "the fixture must have alerts sharing a time"
    assert at == sorted(at, reverse=True)
    walked = walk(client, "/v1/alerts", world.auth(A), limit=1)
    assert [a["id"] for a in walked] == [a["id"] for a in everything]
    gateways = walk(client, "/v1/gateways", world.auth(A), limit=1)
    assert [g["name"] for g in gateways] == sorted(NAMES)
    two = walk(client, "/v1/gateways", world.auth(A), limit=2)
    assert [g["id"] for g in two] == [g["id"] for g in gateways]


def test_cursor_of_another_list_or_tenant_is_refused(world: World) -> None:
    client = world.client()
    a_cursor = client.get("/v1/gateways", headers=world.auth(A), params={"limit": 1}).json()["next_cursor"]
    assert a_cursor
    assert_problem(client.get("/v1/gateways", headers=world.auth(B), params={"cursor": a_cursor}), 400)
    assert_problem(client.get("/v1/alerts", headers=world.auth(A), params={"cursor": a_cursor}), 400)
    assert_problem(client.get("/v1/alerts", headers=world.auth(A), params={"cursor": "W1sxXV0"}), 400)


# -- rate limit --------------------------------------------------------------------------------


def test_rate_limit_429_with_retry_after_and_draft_headers(world: World) -> None:
    now = [1_000_000.0]
    from fastapi.testclient import TestClient

    from controller.api.app import create_app

    client = TestClient(create_app(world.service, ApiLimits(rate_limit=3, rate_window_seconds=60),
                                   clock=lambda: now[0]))
    for remaining in (2, 1, 0):
        resp = client.get("/v1/tenant", headers=world.auth(A))
        assert resp.status_code == 200
        assert resp.headers["ratelimit-policy"] == '"default";q=3;w=60'
        assert resp.headers["ratelimit"] == f'"default";r={remaining};t=20'
    over = client.get("/v1/tenant", headers=world.auth(A))
    assert_problem(over, 429)
    assert over.headers["retry-after"] == "20" and over.headers["ratelimit"] == '"default";r=0;t=20'
    assert client.get("/v1/tenant", headers=world.auth(B)).status_code == 200  # per key
    now[0] += 20
    assert client.get("/v1/tenant", headers=world.auth(A)).status_code == 200  # a new window
