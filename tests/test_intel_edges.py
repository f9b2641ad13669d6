"""Edges of import, feeds and the guard that a careless implementation gets wrong (issue 11)."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from controller.domain.errors import InvalidInput
from controller.intel.fetch import FetchError, check_destination
from controller.service import ControllerService
from controller.services.intel_import import ImportOptions
from controller.services.urls import list_urls
from controller.store.db import Database
from controller.store.intel_models import IocClaim


@pytest.fixture
def svc(db: Database) -> ControllerService:
    return ControllerService(db)


def test_a_strict_import_names_its_first_invalid_entry_past_a_thousand_other_problems(
    svc: ControllerService,
) -> None:
    lines = [f"{'ab' * 16}{i:08x}" for i in range(1200)]  # md5-looking hashes: counted, not errors
    csv_text = "ioc_value,ioc_type\n" + "".join(f"{h},md5_hash\n" for h in lines) + "198.51.100.300,ip\n"
    with pytest.raises(InvalidInput, match=r"line 1202: .*198\.51\.100\.300"):
        svc.importer.import_feed(csv_text.encode(), ImportOptions(fmt="csv"))
    assert svc.list_iocs() == []


def stix(pattern: str, **extra: object) -> bytes:
    stamp = "2026-01-01T00:00:00Z"
    indicator = {"type": "indicator", "spec_version": "2.1", "pattern": pattern, "pattern_type": "stix",
                 "id": "indicator--1b8c7b42-9d7c-4bd5-9a1f-0b8e2f2a7c11", "created": stamp, "modified": stamp,
                 "valid_from": stamp, **extra}
    return json.dumps({"type": "bundle", "id": "bundle--2c1b7b42-9d7c-4bd5-9a1f-0b8e2f2a7c12",
                       "objects": [indicator]}).encode()


def test_a_tlp_option_never_lowers_the_feeds_marking(svc: ControllerService) -> None:
    red = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"
    svc.importer.import_feed(stix("[ipv4-addr:value = '198.51.100.40']", object_marking_refs=[red]),
                             ImportOptions(tlp="green"))
    with svc.db.session(readonly=True) as s:
        (claim,) = s.exec(select(IocClaim)).all()
    assert claim.tlp == "red" and svc.exporter.export("global", "plain")[1] == 0


def test_validity_windows_are_honoured(svc: ControllerService) -> None:
    future = svc.importer.import_feed(
        stix("[ipv4-addr:value = '198.51.100.41']", valid_from="2999-01-01T00:00:00Z"), ImportOptions())
    assert (future.new, future.unsupported) == (0, 1) and "not valid before" in future.problems[0].reason
    old = svc.importer.import_feed(stix("[ipv4-addr:value = '198.51.100.42']",
                                        valid_from="1960-01-01T00:00:00Z",
                                        valid_until="1969-12-31T00:00:00Z"), ImportOptions())
    assert old.new == 0 and svc.list_iocs() == []
    empty = svc.importer.import_feed(stix("[ipv4-addr:value IN ()]"), ImportOptions(skip_invalid=True))
    assert (empty.new, empty.invalid) == (0, 1)


def test_an_operator_refresh_never_writes_into_a_feeds_claim(svc: ControllerService) -> None:
    svc.importer.import_feed(b"198.51.100.43\n", ImportOptions(fmt="plain"), source="feed:f1", sync=True)
    svc.add_ioc("198.51.100.43", ttl_seconds=0)
    with svc.db.session(readonly=True) as s:
        sources = sorted(c.source for c in s.exec(select(IocClaim)))
    assert sources == ["feed:f1", "operator"]
    svc.importer.import_feed(b"", ImportOptions(fmt="plain"), source="feed:f1", sync=True)
    assert [r.ioc.value for r in svc.list_iocs()] == ["198.51.100.43"]  # the operator's claim holds it
    with pytest.raises(InvalidInput, match="reserved"):
        svc.add_ioc("198.51.100.44", source="feed:f1")


def test_feed_definitions_that_would_misbehave_are_refused(svc: ControllerService) -> None:
    with pytest.raises(InvalidInput, match="too long"):
        svc.feeds.add("f" * 60, url="http://198.51.100.1/x")
    with pytest.raises(InvalidInput, match="MSSP_FEED_TOKEN_"):
        svc.feeds.add("t1", taxii="https://198.51.100.1/api/", collection="c1", token_env="DATABASE_URL")
    with pytest.raises(InvalidInput, match="https"):
        svc.feeds.add("t2", taxii="http://198.51.100.1/api/", collection="c1", token_env="MSSP_FEED_TOKEN_X")
    with pytest.raises(InvalidInput, match="--column"):
        svc.feeds.add("c1", url="http://198.51.100.1/x", fmt="plain", column="ip")
    assert svc.feeds.list() == []
    for url in ("http://169.254.169.254/latest/meta-data/", "ftp://198.51.100.1/x", "http://[fe80::1]/x"):
        with pytest.raises(FetchError):
            check_destination(url)


def test_a_deleted_tenants_feed_can_still_be_removed(svc: ControllerService) -> None:
    svc.create_tenant("gone")
    svc.feeds.add("theirs", url="http://198.51.100.1/x", scope="tenant:gone")
    svc.delete_tenant("gone")
    run = svc.feeds.run("theirs")
    assert "deleted" in run.feed.last_error
    svc.feeds.remove("theirs")
    assert svc.feeds.list() == []


def test_urls_are_kept_for_reporting_and_synced_per_source(svc: ControllerService) -> None:
    feed = (b"url\nhttps://drive.google.com/file/d/abc/view\nhttp://c2-panel.example/gate.php\n"
            b"http://c2-panel.example/other\n")
    result = svc.importer.import_feed(feed, ImportOptions(fmt="csv"), source="feed:urls", sync=True)
    assert (result.urls, result.new) == (3, 1)  # the shared host is not blocked, c2-panel.example is
    urls = {u.url: u.host_blocked for u in list_urls(svc.db)}
    assert urls == {"https://drive.google.com/file/d/abc/view": False,
                    "http://c2-panel.example/gate.php": True, "http://c2-panel.example/other": True}
    svc.importer.import_feed(b"url\nhttp://c2-panel.example/gate.php\n", ImportOptions(fmt="csv"),
                             source="feed:urls", sync=True)
    assert [u.url for u in list_urls(svc.db)] == ["http://c2-panel.example/gate.php"]
    assert [r.ioc.value for r in svc.list_iocs()] == ["c2-panel.example"]
