"""BOLA: tenant A's key never reaches tenant B's objects, on every endpoint, on SQLite and
PostgreSQL. Both tenants have gateways of the same names; A asking for B's ids gets 404 exactly as
for ids that do not exist, and no list, report or CSV of A's holds a row of B's."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.store.db import Database
from tests.support.tenant_api import PERIOD, A, B, World, build_world


@pytest.fixture
def world(db: Database, tmp_path: Path) -> World:
    return build_world(db, tmp_path)


def test_another_tenants_gateway_is_not_found(world: World) -> None:
    client = world.client()
    for gid in world.gateways_of(B):
        for params in ({}, {"period": PERIOD}):
            resp = client.get(f"/v1/gateways/{gid}", headers=world.auth(A), params=params)
            assert resp.status_code == 404, resp.text
            assert resp.headers["content-type"].startswith("application/problem+json")
            missing = client.get("/v1/gateways/" + "0" * 32, headers=world.auth(A), params=params)
            # indistinguishable from an id that exists nowhere (the id itself aside)
            absent = missing.json()
            assert resp.json() == {**absent, "detail": absent["detail"].replace("0" * 32, gid)}
        assert client.get(f"/v1/gateways/{gid}", headers=world.auth(B)).status_code == 200
    scope = world.service.for_tenant(world.tenant_ids[A])
    from controller.domain.errors import NotFound

    for gid in world.gateways_of(B):  # the service layer itself, not only the route
        with pytest.raises(NotFound):
            scope.gateway(gid)


def test_lists_never_show_another_tenants_rows(world: World) -> None:
    client = world.client()
    a_ids, b_ids = world.gateways_of(A), world.gateways_of(B)
    assert a_ids and b_ids and not a_ids & b_ids
    for tenant, mine, theirs in ((A, a_ids, b_ids), (B, b_ids, a_ids)):
        auth = world.auth(tenant)
        gateways = client.get("/v1/gateways", headers=auth, params={"limit": 500}).json()["items"]
        assert {g["id"] for g in gateways} == mine
        as_csv = client.get("/v1/gateways", headers={**auth, "Accept": "text/csv"}).text
        assert not any(gid in as_csv for gid in theirs)
        alerts = client.get("/v1/alerts", headers=auth, params={"limit": 500}).json()["items"]
        assert alerts and {a["gateway_id"] for a in alerts} <= mine
        other_ioc = "203.0.113.51" if tenant == A else "203.0.113.50"
        assert all(a["subject"] != other_ioc for a in alerts)
        tenant_body = client.get("/v1/tenant", headers=auth).json()
        assert tenant_body["id"] == world.tenant_ids[tenant] and tenant_body["name"] == tenant
        report = client.get("/v1/reports/security", headers=auth, params={"period": PERIOD})
        assert report.status_code == 200 and other_ioc not in report.text
        assert not any(gid in report.text for gid in theirs)
        usage = client.get("/v1/usage", headers=auth, params={"period": PERIOD})
        assert usage.status_code == 200 and usage.json()["tenant"] == tenant
        assert usage.json()["egress_bytes"] == usage_bytes(world, tenant)
        html = client.get("/v1/reports/monthly", headers=auth, params={"period": PERIOD})
        assert html.status_code == 200 and other_ioc not in html.text


def usage_bytes(world: World, tenant: str) -> int:
    from controller.telemetry.queries import usage

    return usage(world.db, world.tenant_ids[tenant], PERIOD).egress_bytes


def test_a_cursor_cannot_reach_into_another_tenant(world: World) -> None:
    client = world.client()
    b_page = client.get("/v1/alerts", headers=world.auth(B), params={"limit": 1}).json()
    assert b_page["next_cursor"]
    resp = client.get("/v1/alerts", headers=world.auth(A), params={"cursor": b_page["next_cursor"]})
    assert resp.status_code == 400
    assert b_page["items"][0]["id"] not in resp.text
