"""The TAXII 2.1 server, pulled by a real TAXII client (taxii2-client over HTTP on loopback): every
page, then only what was added after; partner keys only; nothing names a tenant (issue 11)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import requests
from sqlalchemy import update
from taxii2client.v21 import Server, as_pages

from controller.api.app import create_app
from controller.api.server import ApiServer, ListenPlan
from controller.service import ControllerService
from controller.services.intel_import import ImportOptions
from controller.store.db import Database
from controller.store.models import Ioc


class Bearer(requests.auth.AuthBase):
    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.key}"
        return r


def lines(prefix: str, n: int) -> bytes:
    return "".join(f"{prefix}.{i}\n" for i in range(1, n + 1)).encode()


def pull_all(url: str, key: str, per_request: int, **filters: Any) -> list[dict[str, Any]]:
    server = Server(url, auth=Bearer(key))
    (root,) = server.api_roots
    (collection,) = root.collections
    assert collection.can_read and not collection.can_write
    found: list[dict[str, Any]] = []
    for envelope in as_pages(collection.get_objects, per_request=per_request, **filters):
        found += envelope.get("objects", [])
    return found


async def test_a_partner_pulls_every_page_then_only_what_was_added_after(db: Database) -> None:
    svc = ControllerService(db)
    svc.create_tenant("hidden-customer")
    svc.importer.import_feed(lines("198.51.100", 120),
                             ImportOptions(fmt="plain", tlp="green", source="cert-a"))
    svc.importer.import_feed(b"203.0.113.66\n", ImportOptions(fmt="plain", tlp="amber"))  # not shared
    svc.importer.import_feed(b"203.0.113.67\n", ImportOptions(fmt="plain"))  # unmarked: not shared
    svc.importer.import_feed(b"203.0.113.68\n", ImportOptions(fmt="plain", tlp="clear",
                                                             scope="tenant:hidden-customer"))
    _, partner_key = svc.apikeys.create_partner("cert-eu")
    _, tenant_key = svc.apikeys.create("hidden-customer")
    server = ApiServer(create_app(svc), ListenPlan("127.0.0.1", 0, tls=False))
    await server.start()
    try:
        url = f"{server.url}/taxii2/"
        first = await asyncio.to_thread(pull_all, url, partner_key, 50)
        assert len(first) == 120 and len({o["id"] for o in first}) == 120
        assert sorted(o["pattern"] for o in first)[0] == "[ipv4-addr:value = '198.51.100.1']"
        text = json.dumps(first)
        assert "hidden-customer" not in text and "cert-a" not in text and "203.0.113" not in text
        newest = max(o["created"] for o in first)

        await asyncio.sleep(0.01)  # the next indicators are added strictly later
        svc.importer.import_feed(b"192.0.2.10\n192.0.2.11\n", ImportOptions(fmt="plain", tlp="clear"))
        later = await asyncio.to_thread(pull_all, url, partner_key, 50, added_after=newest)
        assert sorted(o["pattern"] for o in later) == [
            "[ipv4-addr:value = '192.0.2.10']", "[ipv4-addr:value = '192.0.2.11']"]

        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            assert (await client.get("/taxii2/")).status_code == 401
            tenant = await client.get("/taxii2/", headers={"Authorization": f"Bearer {tenant_key}"})
            assert tenant.status_code == 403
            auth = {"Authorization": f"Bearer {partner_key}"}
            manifest = await client.get("/taxii2/shared/collections/8f2e4b1c-3d5a-4e6f-9a7b-1c2d3e4f5a6b"
                                        "/manifest/", params={"limit": 5}, headers=auth)
            assert manifest.status_code == 200 and manifest.headers["content-type"].startswith(
                "application/taxii+json")
            body = manifest.json()
            assert body["more"] is True and len(body["objects"]) == 5 and body["next"]
            for bad in ({"limit": 0}, {"next": "garbage!"}, {"added_after": "yesterday"}):
                got = await client.get("/taxii2/shared/collections/8f2e4b1c-3d5a-4e6f-9a7b-1c2d3e4f5a6b"
                                       "/objects/", params=bad, headers=auth)
                assert got.status_code in (400, 422), (bad, got.text)
            missing = await client.get("/taxii2/shared/collections/nope/objects/", headers=auth)
            assert missing.status_code == 404
    finally:
        await server.stop()


@pytest.mark.parametrize("level", ["clear", "green"])
def test_shared_collection_takes_the_least_restrictive_marking(db: Database, level: str) -> None:
    svc = ControllerService(db)
    svc.importer.import_feed(b"198.51.100.9\n", ImportOptions(fmt="plain", tlp="red", source="a"))
    assert svc.shared.page().objects == []
    svc.importer.import_feed(b"198.51.100.9\n", ImportOptions(fmt="plain", tlp=level, source="b"))
    (shared,) = svc.shared.page().objects
    marking = {"clear": "613f2e26", "green": "34098fce"}[level]
    assert shared.stix["object_marking_refs"][0].startswith(f"marking-definition--{marking}")


async def test_a_taxii_feed_pulls_another_controllers_collection_incrementally(
    db: Database, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two MSSPs: the upstream serves its shared indicators, the downstream pulls them as a feed."""
    from controller.store.db import Database as Db

    upstream = ControllerService(Db(f"sqlite:///{tmp_path / 'upstream.db'}"))
    upstream.db.upgrade()
    upstream.importer.import_feed(lines("198.51.100", 30), ImportOptions(fmt="plain", tlp="green"))
    _, key = upstream.apikeys.create_partner("downstream")
    monkeypatch.setenv("MSSP_FEED_TOKEN_UPSTREAM", key)
    server = ApiServer(create_app(upstream), ListenPlan("127.0.0.1", 0, tls=False))
    await server.start()
    try:
        svc = ControllerService(db)
        svc.feeds.add("upstream", taxii=f"{server.url}/taxii2/shared/",
                      collection="8f2e4b1c-3d5a-4e6f-9a7b-1c2d3e4f5a6b", token_env="MSSP_FEED_TOKEN_UPSTREAM",
                      every_seconds=600)
        first = await asyncio.to_thread(svc.feeds.run, "upstream")
        assert first.feed.last_error == "" and first.result is not None and first.result.new == 30
        assert first.feed.entries == 30
        with upstream.db.session() as s:  # those were added an hour ago, well before the pull's margin
            s.exec(update(Ioc).values(  # type: ignore[call-overload]
                created_at_ms=Ioc.created_at_ms - 3600_000, updated_at_ms=Ioc.updated_at_ms - 3600_000))
        upstream.importer.import_feed(b"192.0.2.77\n", ImportOptions(fmt="plain", tlp="clear"))
        second = await asyncio.to_thread(svc.feeds.run, "upstream")
        assert second.result is not None and (second.result.new, second.feed.entries) == (1, 31)
        assert second.result.entries == 1  # incremental: not the whole collection again
        monkeypatch.delenv("MSSP_FEED_TOKEN_UPSTREAM")
        failed = await asyncio.to_thread(svc.feeds.run, "upstream")
        assert "MSSP_FEED_TOKEN_UPSTREAM" in failed.feed.last_error and failed.feed.entries == 31
    finally:
        await server.stop()
        upstream.db.engine.dispose()


def test_a_changed_indicator_is_a_new_version_in_the_collection(db: Database) -> None:
    svc = ControllerService(db)
    svc.importer.import_feed(b"198.51.100.70\n198.51.100.71\n", ImportOptions(fmt="plain", tlp="green"))
    first = svc.shared.page().objects
    mark = max(o.date_added_ms for o in first)
    with db.session() as s:  # make the first versions clearly older
        s.exec(update(Ioc).values(updated_at_ms=Ioc.updated_at_ms - 1000))  # type: ignore[call-overload]
    svc.importer.import_feed(b"198.51.100.71\n", ImportOptions(fmt="plain", tlp="green", confidence=95))
    (changed,) = svc.shared.page(added_after_ms=mark - 500).objects
    assert changed.stix["pattern"] == "[ipv4-addr:value = '198.51.100.71']"
    assert changed.stix["confidence"] == 95
    assert changed.stix["modified"] > changed.stix["created"]
    assert changed.stix["id"] == next(o.stix["id"] for o in first if "71" in o.stix["pattern"])


def test_alliance_indicators_are_shared_once_and_tenant_ones_never(db: Database) -> None:
    svc = ControllerService(db)
    svc.create_tenant("acme")
    held = (("alliance", "203.0.113.61"), ("tenant:acme", "203.0.113.62"), ("global", "203.0.113.63"))
    for scope, value in held:
        svc.importer.import_feed(f"{value}\n".encode(), ImportOptions(fmt="plain", tlp="green", source="f",
                                                                      scope=scope))
    shared = sorted(o.stix["pattern"] for o in svc.shared.page().objects)
    assert shared == ["[ipv4-addr:value = '203.0.113.61']", "[ipv4-addr:value = '203.0.113.63']"]
