"""Sightings and promotion on a real store (SQLite and PostgreSQL): the policy's two tiers, tenants
outside the alliance, the never-block guard, the operator's promote and dismiss, one promotion under
concurrency, and a promoted push that names nobody."""

from __future__ import annotations

import threading

import pytest
from sqlmodel import select

from controller.domain.errors import InvalidInput, NotFound
from controller.domain.promotion import PromotionPolicy
from controller.service import ControllerService
from controller.services.sighting_views import list_sightings
from controller.services.sightings import Recorded, Report, Sightings
from controller.store.db import Database
from controller.store.models import PushLog, Tenant
from controller.telemetry.consumer import TelemetryConsumer
from gateway_agent.telemetry.publisher import msg_id
from mssp.common.channels import ALLIANCE_CHANNEL
from mssp.common.clock import now_ms
from mssp.common.metrics import DNS_BLOCKED, IOC_HITS
from mssp.v1 import common_pb2, push_pb2
from tests.support.nats import NatsBroker
from tests.support.telemetry_batches import make_batch, subject_of
from tests.support.waiting import eventually

C2 = "203.0.113.50"


def hit(value: str = C2, host: str = "192.0.2.10", via: str = "firewall") -> Report:
    t = now_ms()
    return Report(value, host, via, 3, t - 1000, t)


def fleet(svc: ControllerService, names: list[str], *, sharing: bool = True) -> dict[str, tuple[str, str]]:
    """tenant name -> (tenant id, gateway id) of one enrolled gateway each."""
    out = {}
    for name in names:
        tenant = svc.create_tenant(name)
        if sharing:
            svc.set_sharing(name, True)
        _, secret, _ = svc.add_gateway(name, "gw1")
        ticket = svc.redeem_enrollment_token(secret)
        svc.complete_enrollment(ticket.gateway_id, cert_serial=f"s-{name}", nats_public_key=f"U{name}",
                                agent_version="1")
        out[name] = (tenant.id, ticket.gateway_id)
    return out


def alliance_pushes(db: Database) -> list[push_pb2.Push]:
    with db.session(readonly=True) as s:
        rows = s.exec(select(PushLog.payload).where(PushLog.channel == ALLIANCE_CHANNEL)).all()
    return [push_pb2.Push.FromString(p) for p in rows]


def test_three_organisations_promote_to_the_alliance_without_naming_anyone(db: Database) -> None:
    svc = ControllerService(db)
    gws = fleet(svc, ["acme", "globex", "initech"])
    for name in gws:
        svc.add_ioc(C2, f"tenant:{name}", confidence=80)
    recorded = [svc.sightings.record(*gws[name], [hit()]) for name in ("acme", "globex")]
    assert [r.promoted for r in recorded] == [(), ()]
    (waiting,) = list_sightings(db)
    assert waiting.state == "candidate" and waiting.sharing_tenants == 2 and "2 of the 3" in waiting.reason
    assert alliance_pushes(db) == []

    third = svc.sightings.record(*gws["initech"], [hit(host="192.0.2.77")])
    assert third.promoted == (C2,) and third.accepted == 1
    (promoted,) = list_sightings(db, state="promoted")
    assert (promoted.scope, promoted.decided_by, promoted.tenants) == ("alliance", "policy", 3)
    assert promoted.hosts == 3
    (record,) = [r for r in svc.list_iocs("alliance")]
    assert record.ioc.value == C2 and record.ioc.source == "alliance" and record.ioc.expires_at_ms > now_ms()
    (push,) = alliance_pushes(db)
    wire = push.SerializeToString()
    for name, (tid, gid) in gws.items():  # nothing in what every gateway receives names who saw it
        for secret in (name, tid, gid, "192.0.2.10", "192.0.2.77"):
            assert secret.encode() not in wire
    # It never leaves the MSSP: no export (whatever the TLP levels asked) and not in the TAXII collection.
    exported, count = svc.exporter.export("alliance", "plain", ["unmarked", "clear", "green", "amber", "red"])
    assert count == 0 and C2.encode() not in exported
    assert svc.shared.page().objects == []
    # More sightings do not promote it twice; its decay clock restarts instead.
    assert svc.sightings.record(*gws["acme"], [hit()]).promoted == ()
    assert len(alliance_pushes(db)) == 1


def test_outsiders_do_not_count_and_the_fast_tier_needs_one_strong_hit(db: Database) -> None:
    svc = ControllerService(db)
    inside = fleet(svc, ["acme"])
    outside = fleet(svc, ["globex", "initech", "umbrella"], sharing=False)
    for name, ids in outside.items():
        svc.add_ioc(C2, f"tenant:{name}", confidence=99)
        svc.sightings.record(*ids, [hit()])
    (only_outsiders,) = list_sightings(db)
    assert only_outsiders.state == "candidate" and only_outsiders.tenants == 3
    assert only_outsiders.sharing_tenants == 0 and "outside the alliance" in only_outsiders.reason

    svc.add_ioc("c2.example.net", "tenant:acme", confidence=95)  # acme's own strong indicator
    fast = svc.sightings.record(*inside["acme"], [hit("c2.example.net", via="dns")])
    assert fast.promoted == ("c2.example.net",)
    (view,) = list_sightings(db, state="promoted")
    assert "own indicator at confidence 95" in view.reason


def test_guard_global_and_bad_reports(db: Database) -> None:
    svc = ControllerService(db)
    svc.sightings = Sightings(db, PromotionPolicy(min_tenants=1, min_confidence=0))
    gws = fleet(svc, ["acme"])
    assert svc.sightings.record(*gws["acme"], [hit("www.google.com")]).promoted == ()
    (refused,) = list_sightings(db)
    assert refused.state == "candidate" and refused.reason.startswith("not promoted:")
    assert "MISP warning list" in refused.reason
    svc.add_ioc("198.51.100.44")  # global already: nothing to promote
    svc.sightings.record(*gws["acme"], [hit("198.51.100.44")])
    assert [v.reason for v in list_sightings(db) if v.value == "198.51.100.44"] == [
        "already global: every gateway enforces it"]

    bad = [Report("not an indicator!", "192.0.2.1", "firewall", 1, 0, 0),
           Report(C2, "not-an-address", "firewall", 1, 0, 0),
           Report(C2, "192.0.2.1", "carrier-pigeon", 1, 0, 0)]
    assert svc.sightings.record(*gws["acme"], bad) == Recorded(0, 3, ())
    assert {v.value for v in list_sightings(db)} == {"www.google.com", "198.51.100.44"}
    with pytest.raises(InvalidInput, match="at most 100"):
        svc.sightings.record(*gws["acme"], [hit()] * 101)
    with pytest.raises(InvalidInput, match="unknown sighting state"):
        list_sightings(db, state="maybe")


def test_operator_promotes_and_dismisses_once(db: Database) -> None:
    svc = ControllerService(db)
    svc.sightings = Sightings(db, PromotionPolicy(require_approval=True, min_tenants=1, min_confidence=0))
    gws = fleet(svc, ["acme"])
    svc.add_ioc(C2, "tenant:acme", confidence=99)
    svc.sightings.record(*gws["acme"], [hit(), hit("203.0.113.51")])
    views = {v.value: v for v in list_sightings(db)}
    assert all(v.state == "candidate" and "waiting for approval" in v.reason for v in views.values())

    promoted, dismissed = views[C2].id, views["203.0.113.51"].id
    wins: list[str] = []
    errors: list[Exception] = []

    def promote() -> None:
        try:
            wins.append(svc.sightings.promote(promoted, "global", 3600))
        except InvalidInput as exc:
            errors.append(exc)

    threads = [threading.Thread(target=promote) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins == [C2] and len(errors) == 3 and all("promoted already" in str(e) for e in errors)
    assert [r.ioc.source for r in svc.list_iocs("global")] == ["alliance"]
    assert svc.sightings.dismiss(dismissed) == "203.0.113.51"
    with pytest.raises(InvalidInput, match="dismissed already"):
        svc.sightings.promote(dismissed)
    with pytest.raises(InvalidInput, match="promoted already; remove the indicator"):
        svc.sightings.dismiss(promoted)
    with pytest.raises(NotFound):
        svc.sightings.promote("nope")
    with pytest.raises(InvalidInput, match="promote to one of"):
        svc.sightings.promote(views[C2].id, "tenant:acme")
    assert {v.state for v in list_sightings(db, tenant="acme")} == {"promoted", "dismissed"}


async def test_hits_folded_from_telemetry_are_sightings_too(nats_broker: NatsBroker, db: Database) -> None:
    """The slow path, through the real JetStream consumer: a sinkholed query and a dropped packet in a
    telemetry batch become sightings (the agent's fast path does not see DNS)."""
    svc = ControllerService(db)
    gws = fleet(svc, ["acme"])
    tid, gid = gws["acme"]
    nc = await nats_broker.connect_controller(max_reconnect_attempts=-1)
    consumer = TelemetryConsumer(db, nc, fetch_timeout=0.3, linger=0.05,
                                 on_sightings=svc.sightings.record_folded)
    await consumer.start()
    try:
        gw = await nats_broker.connect_gateway(tid, gid)
        batch = make_batch(gid, 1, [(DNS_BLOCKED, "c2.example.net|192.0.2.30", 0, 0, 4),
                                    (IOC_HITS, f"{C2}|192.0.2.31", 2, 120, 0)], tenant=tid, end_ms=now_ms())
        await gw.jetstream(timeout=5).publish(subject_of(batch), batch.SerializeToString(),
                                              headers={"Nats-Msg-Id": msg_id(gid, 1, "n")})
        await eventually(lambda: _sighted(db, 2))
        seen = {v.value: [(w.host, w.via, w.count) for w in v.seen_at] for v in list_sightings(db)}
        assert seen == {"c2.example.net": [("192.0.2.30", "dns", 4)], C2: [("192.0.2.31", "firewall", 2)]}
    finally:
        await consumer.stop()


async def _sighted(db: Database, n: int) -> bool:
    return len(list_sightings(db)) == n


def test_false_positives_exempt_at_once_and_enough_withdraw_the_promotion(db: Database) -> None:
    svc = ControllerService(db)
    svc.false_positives.threshold = 2
    gws = fleet(svc, ["acme", "globex", "initech"])
    fleet(svc, ["umbrella"], sharing=False)
    for name in gws:
        svc.add_ioc(C2, f"tenant:{name}", confidence=80)
        svc.sightings.record(*gws[name], [hit()])
    assert [r.ioc.source for r in svc.list_iocs("alliance")] == ["alliance"]
    svc.add_ioc("203.0.113.99", "alliance")  # the operator's own alliance indicator

    def exempt(name: str) -> list[str]:
        with db.session(readonly=True) as s:
            tenant = s.exec(select(Tenant).where(Tenant.name == name)).one()
            return list(common_pb2.PolicyBundle.FromString(tenant.policy_bundle).exempt)

    acme_id = gws["acme"][0]
    first = svc.false_positives.report(acme_id, C2)
    assert (first.new, first.withdrawn) == (True, False) and exempt("acme") == [C2]
    assert svc.false_positives.report(acme_id, C2).new is False  # once per tenant
    assert exempt("globex") == []
    # A later policy change keeps the exemption.
    svc.set_policy("acme", "default_action: allow\nrules: []\n")
    assert exempt("acme") == [C2]
    # Outside the alliance a report exempts that tenant but does not count towards withdrawing.
    umbrella_id = svc.tenant_id("umbrella")
    assert svc.false_positives.report(umbrella_id, C2).withdrawn is False
    assert [r.ioc.value for r in svc.list_iocs("alliance")] == [C2, "203.0.113.99"]
    second = svc.false_positives.report(gws["globex"][0], C2)
    assert second.withdrawn is True
    assert [r.ioc.value for r in svc.list_iocs("alliance")] == ["203.0.113.99"]  # the operator's stays
    (withdrawn,) = list_sightings(db, state="dismissed")
    assert withdrawn.value == C2 and "false positive by 2 organisations" in withdrawn.reason
    assert svc.false_positives.report(gws["initech"][0], "203.0.113.99").withdrawn is False  # not promoted
    with pytest.raises(InvalidInput):
        svc.false_positives.report(acme_id, "not an indicator")
    with pytest.raises(NotFound):
        svc.false_positives.report("0" * 32, C2)


def test_sightings_widen_and_bad_numbers_are_refused(db: Database) -> None:
    svc = ControllerService(db)
    gws = fleet(svc, ["acme"])
    t = now_ms()
    svc.sightings.record(*gws["acme"], [Report(C2, "192.0.2.10", "firewall", 5, t - 1000, t)])
    svc.sightings.record(*gws["acme"], [Report(C2, "192.0.2.10", "firewall", 2, t - 9000, t - 500)])
    svc.sightings.record(*gws["acme"], [Report(C2, "192.0.2.10", "dns", 1, t, t)])
    (view,) = list_sightings(db)
    rows = {w.via: (w.count, w.first_seen_ms, w.last_seen_ms) for w in view.seen_at}
    assert rows == {"firewall": (5, t - 9000, t), "dns": (1, t, t)}  # nothing lowered, via kept apart
    bad = [Report(C2, "192.0.2.10", "firewall", 2**63, t, t),
           Report(C2, "fe80::1%" + "x" * 60, "firewall", 1, t, t)]
    assert svc.sightings.record(*gws["acme"], bad) == Recorded(0, 2, ())


def test_a_strong_beacon_is_promoted_on_one_router_s_word(db: Database) -> None:
    svc = ControllerService(db)
    gws = fleet(svc, ["acme"])
    t = now_ms()
    weak = svc.sightings.record(*gws["acme"], [Report("203.0.113.51", "192.0.2.10", "beacon", 12, t, t, 85)])
    assert weak.promoted == ()
    strong = svc.sightings.record(*gws["acme"], [Report(C2, "192.0.2.10", "beacon", 12, t, t, 95)])
    assert strong.promoted == (C2,)
    (view,) = list_sightings(db, state="promoted")
    assert view.reason == "a router scored it a beacon at 95"
    # A score claimed on another kind of sighting counts for nothing.
    svc.sightings.record(*gws["acme"], [Report("203.0.113.52", "192.0.2.10", "firewall", 1, t, t, 99)])
    assert [v.state for v in list_sightings(db) if v.value == "203.0.113.52"] == ["candidate"]


def test_beacon_suspects_are_in_the_tenant_s_security_report(db: Database) -> None:
    from controller.reports.security import security_report
    from controller.services.tenant_scope import current_period

    svc = ControllerService(db)
    gws = fleet(svc, ["acme", "globex"])
    t = now_ms()
    svc.sightings.record(*gws["acme"], [Report("203.0.113.51", "192.0.2.10", "beacon", 12, t, t, 85)])
    svc.sightings.record(*gws["globex"], [Report("203.0.113.52", "192.0.2.20", "beacon", 9, t, t, 82)])
    (suspect,) = security_report(db, gws["acme"][0], current_period(t)).beacon_suspects
    assert (suspect.destination, suspect.host.gateway, suspect.host.address, suspect.score) == (
        "203.0.113.51", "gw1", "192.0.2.10", 85)  # only its own: globex's beacon is not acme's business
