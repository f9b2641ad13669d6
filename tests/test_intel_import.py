"""Import, claims, the guard and export through the service layer, on SQLite and PostgreSQL (issue 11)."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select
from stix2validator import ValidationOptions, validate_string

from controller.domain.errors import InvalidInput
from controller.service import ControllerService
from controller.services.intel_import import ImportOptions
from controller.store.db import Database
from controller.store.models import PushLog
from mssp.common.channels import GLOBAL_CHANNEL
from mssp.v1 import push_pb2


@pytest.fixture
def svc(db: Database) -> ControllerService:
    return ControllerService(db, token_ttl_seconds=3600)


def values(svc: ControllerService, scope: str = "global") -> list[str]:
    return sorted(r.ioc.value for r in svc.list_iocs(scope))


def pushes(svc: ControllerService, channel: str = GLOBAL_CHANNEL) -> list[push_pb2.Push]:
    with svc.db.session(readonly=True) as s:
        rows = s.exec(select(PushLog).where(PushLog.channel == channel).order_by(PushLog.seq)).all()
        return [push_pb2.Push.FromString(r.payload) for r in rows]


PLAIN = b"""# firehol-style header\r
198.51.100.1\r
198.51.100.0/28 ; SBL123\r
\r
evil.example   # inline comment
203.0.113.9:8080
"""


def test_plain_import_is_one_transaction_and_one_push(svc: ControllerService) -> None:
    result = svc.importer.import_feed(PLAIN, ImportOptions(fmt="plain", source="drop"))
    assert (result.entries, result.new, result.refreshed, result.unchanged, result.invalid) == (4, 4, 0, 0, 0)
    assert values(svc) == ["198.51.100.0/28", "198.51.100.1", "203.0.113.9", "evil.example"]
    (push,) = pushes(svc)
    assert sorted(i.value for i in push.iocs.upsert) == values(svc) and result.seqs == [push.seq]
    assert {r.ioc.source for r in svc.list_iocs()} == {"drop"}


def test_strict_import_names_the_bad_line_and_stores_nothing(svc: ControllerService) -> None:
    bad = b"198.51.100.1\n198.51.100.300\nevil.example\n"
    with pytest.raises(InvalidInput, match=r"line 2: .*198\.51\.100\.300.*nothing was imported"):
        svc.importer.import_feed(bad, ImportOptions(fmt="plain"))
    assert values(svc) == [] and pushes(svc) == []
    skipped = svc.importer.import_feed(bad, ImportOptions(fmt="plain", skip_invalid=True))
    assert (skipped.new, skipped.invalid) == (2, 1)
    assert [(p.where, p.kind) for p in skipped.problems] == [("line 2", "invalid")]


def test_guard_refusals_are_counted_not_fatal_and_ioc_add_refuses(svc: ControllerService) -> None:
    feed = b"10.0.0.1\n192.168.1.1\n100.64.0.1\n8.8.8.8\n198.51.100.5\n"
    result = svc.importer.import_feed(feed, ImportOptions(fmt="plain"))
    assert (result.new, result.refused) == (1, 4) and values(svc) == ["198.51.100.5"]
    reasons = {p.where: p.reason for p in result.problems if p.kind == "refused"}
    assert "private" in reasons["line 2"] and "carrier-grade" in reasons["line 3"]
    assert "resolver" in reasons["line 4"]
    for value in ("10.0.0.0/8", "192.168.1.1", "fd00::1"):
        with pytest.raises(InvalidInput, match="refusing to block"):
            svc.add_ioc(value)
    svc.allowlist.add("203.0.113.0/24", note="our office")
    with pytest.raises(InvalidInput, match="allow-list"):
        svc.add_ioc("203.0.113.7")
    assert svc.importer.import_feed(b"203.0.113.8\n", ImportOptions(fmt="plain")).refused == 1


def test_dry_run_reports_and_changes_nothing(svc: ControllerService) -> None:
    result = svc.importer.import_feed(PLAIN, ImportOptions(fmt="plain", dry_run=True))
    assert result.dry_run and result.new == 4 and result.seqs == []
    assert values(svc) == [] and pushes(svc) == []


def test_reimport_pushes_only_the_delta(svc: ControllerService) -> None:
    lines = [f"198.51.100.{i}" for i in range(1, 101)]
    svc.importer.import_feed("\n".join(lines).encode(), ImportOptions(fmt="plain", confidence=60))
    again = svc.importer.import_feed("\n".join(lines).encode(), ImportOptions(fmt="plain", confidence=60))
    assert (again.new, again.refreshed, again.unchanged, again.seqs) == (0, 0, 100, [])
    changed = svc.importer.import_feed(b"198.51.100.7\n", ImportOptions(fmt="plain", confidence=95))
    assert (changed.refreshed, changed.unchanged) == (1, 0)
    last = pushes(svc)[-1]
    assert [(i.value, i.confidence) for i in last.iocs.upsert] == [("198.51.100.7", 95)]


def test_a_feed_sync_removes_only_its_own_claims(svc: ControllerService) -> None:
    svc.add_ioc("198.51.100.1", source="analyst")
    first = svc.importer.import_feed(b"198.51.100.1\n198.51.100.2\n", ImportOptions(fmt="plain"),
                                     source="feed:demo", sync=True)
    assert (first.new, first.refreshed) == (1, 1)
    gone = svc.importer.import_feed(b"198.51.100.3\n", ImportOptions(fmt="plain"), source="feed:demo",
                                    sync=True)
    assert (gone.new, gone.removed) == (1, 2)
    assert values(svc) == ["198.51.100.1", "198.51.100.3"]  # the analyst's claim keeps .1
    assert [r.sources for r in svc.list_iocs()] == [("analyst",), ("feed:demo",)]
    last = pushes(svc)[-1]
    assert [i.value for i in last.iocs.remove] == ["198.51.100.2"]
    with pytest.raises(InvalidInput, match="reserved"):
        svc.importer.import_feed(b"198.51.100.9\n", ImportOptions(fmt="plain", source="feed:demo"))


STIX = {
    "type": "bundle", "id": "bundle--6d3b6b4e-5a43-4c8a-9c5d-2b8f0c3e1a11",
    "objects": [
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--11111111-1111-4111-8111-111111111111",
         "created": "2026-11-01T00:00:00Z", "modified": "2026-11-01T00:00:00Z", "pattern_type": "stix",
         "pattern": "[ipv4-addr:value = '198.51.100.20'] OR [domain-name:value = 'c2.example']",
         "valid_from": "2026-11-01T00:00:00Z", "confidence": 70,
         "object_marking_refs": ["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"]},
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--22222222-2222-4222-8222-222222222222",
         "created": "2026-11-01T00:00:00Z", "modified": "2026-11-01T00:00:00Z", "pattern_type": "stix",
         "pattern": "[file:hashes.'SHA-256' = '"
                    "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']",
         "valid_from": "2026-11-01T00:00:00Z"},
    ],
}


def test_stix_import_then_export_validates_and_names_no_tenant(svc: ControllerService) -> None:
    svc.create_tenant("acme-secret-customer")
    result = svc.importer.import_feed(json.dumps(STIX).encode(), ImportOptions(source="cert-x"))
    assert (result.new, result.unsupported) == (2, 1)
    svc.add_ioc("198.51.100.99")  # unmarked: not exported by default
    data, count = svc.exporter.export("global", "stix")
    assert count == 2
    text = data.decode()
    assert validate_string(text, ValidationOptions(version="2.1")).is_valid
    assert "198.51.100.99" not in text and "acme" not in text and "cert-x" not in text
    patterns = sorted(o["pattern"] for o in json.loads(text)["objects"])
    assert patterns == ["[domain-name:value = 'c2.example']", "[ipv4-addr:value = '198.51.100.20']"]
    plain, both = svc.exporter.export("global", "plain", ["green", "unmarked"])
    assert both == 3 and b"198.51.100.99\n" in plain
    with pytest.raises(InvalidInput, match="TLP"):
        svc.exporter.export("global", "csv", ["purple"])


def test_expiry_removes_a_claim_and_keeps_the_indicator_while_another_holds_it(
    svc: ControllerService,
) -> None:
    svc.add_ioc("198.51.100.50", source="short", ttl_seconds=1, confidence=90)
    svc.add_ioc("198.51.100.50", source="long", confidence=40, ttl_seconds=0)
    with svc.db.session() as s:  # age the short claim past its expiry
        from controller.store.intel_models import IocClaim

        claim = s.get(IocClaim, (GLOBAL_CHANNEL, 1, "198.51.100.50", "short"))
        assert claim is not None
        claim.expires_at_ms = 1
        s.add(claim)
    assert svc.expire_iocs() == 0  # a claim went, the indicator stays
    (record,) = svc.list_iocs()
    assert (record.ioc.source, record.ioc.confidence, record.ioc.expires_at_ms) == ("long", 40, 0)
    assert [(i.value, i.confidence) for i in pushes(svc)[-1].iocs.upsert] == [("198.51.100.50", 40)]


def test_beacons_announce_only_what_went_out(svc: ControllerService) -> None:
    """A large import still being split and signed must not be beaconed: every gateway would resync."""
    svc.add_ioc("198.51.100.1")
    svc.mark_published([row_id for row_id, _ in svc.unpublished_outbox()])
    svc.importer.import_feed(b"198.51.100.2\n198.51.100.3\n", ImportOptions(fmt="plain"))
    assert svc.channel_heads() == {GLOBAL_CHANNEL: 2} and svc.published_heads() == {GLOBAL_CHANNEL: 1}
    svc.mark_published([row_id for row_id, _ in svc.unpublished_outbox()])
    assert svc.published_heads() == {GLOBAL_CHANNEL: 2}


def test_vendor_service_domains_are_never_blocked(svc: ControllerService) -> None:
    for value in ("www.google.com", "drive.google.com", "malware.google.com", "login.microsoftonline.com"):
        with pytest.raises(InvalidInput, match="vendor's service domain"):
            svc.add_ioc(value)
    assert svc.add_ioc("contoso-phish.sharepoint.com").ioc.value == "contoso-phish.sharepoint.com"
