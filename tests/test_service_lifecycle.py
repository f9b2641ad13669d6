"""Issue 9 item 4 and IOC edits, on both stores: a new token for a pending gateway, re-enrollment of
a revoked one as a new identity, gateway and tenant delete, set-plan; IOC refreshes that keep the
fields not given and removes that say where the value is."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from controller.domain.errors import AlreadyExists, Conflict, InvalidInput, NotFound, Unauthenticated
from controller.service import ControllerService
from controller.store.db import Database
from controller.store.revoked import revoked_nats_keys

KEY_A, KEY_B = "UA" + "A" * 54, "UB" + "B" * 54


@pytest.fixture
def svc(db: Database) -> ControllerService:
    return ControllerService(db, token_ttl_seconds=3600)


def enroll(svc: ControllerService, secret: str, serial: str, key: str) -> str:
    ticket = svc.redeem_enrollment_token(secret)
    svc.complete_enrollment(ticket.gateway_id, cert_serial=serial, nats_public_key=key, agent_version="t")
    return ticket.gateway_id


def token_count(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM enrollment_token").scalar_one())


def redeemable(svc: ControllerService, secrets: list[str]) -> list[str]:
    """Which of `secrets` can still be spent (spending them)."""
    good = []
    for secret in secrets:
        try:
            svc.redeem_enrollment_token(secret)
        except Unauthenticated:
            continue
        good.append(secret)
    return good


def test_new_token_for_a_pending_gateway_ends_the_older_ones(svc: ControllerService) -> None:
    svc.create_tenant("acme")
    gateway, first, _ = svc.add_gateway("acme", "gw1")
    again, second, expires, new_identity = svc.issue_token("acme", "gw1", 600)
    assert not new_identity and again.id == gateway.id and again.status == "pending"
    assert second != first and expires > time.time() * 1000
    with pytest.raises(Unauthenticated, match="expired; ask the operator for a new one"):
        svc.redeem_enrollment_token(first)
    enroll(svc, second, "c001", KEY_A)
    with pytest.raises(Conflict, match="revoke"):
        svc.issue_token("acme", "gw1")
    assert svc.get_gateway("acme", "gw1").status == "enrolled"


def test_bad_token_requests_change_nothing(svc: ControllerService, db: Database) -> None:
    svc.create_tenant("acme")
    _, secret, _ = svc.add_gateway("acme", "gw1")
    before = token_count(db)
    with pytest.raises(NotFound, match="acme/nope"):
        svc.issue_token("acme", "nope")
    with pytest.raises(NotFound, match="nobody"):
        svc.issue_token("nobody", "gw1")
    with pytest.raises(InvalidInput, match="token lifetime"):
        svc.issue_token("acme", "gw1", -5)
    with pytest.raises(InvalidInput):
        svc.issue_token("acme", "Bad Name")
    assert token_count(db) == before
    assert redeemable(svc, [secret]) == [secret]


def test_a_revoked_gateway_re_enrolls_as_a_new_identity(svc: ControllerService, db: Database) -> None:
    svc.create_tenant("acme")
    _, secret, _ = svc.add_gateway("acme", "gw1")
    old_id = enroll(svc, secret, "c001", KEY_A)
    svc.revoke_gateway("acme", "gw1")
    fresh, secret2, _, new_identity = svc.issue_token("acme", "gw1")
    assert new_identity and fresh.id != old_id and fresh.status == "pending" and fresh.name == "gw1"
    new_id = enroll(svc, secret2, "c002", KEY_B)
    assert new_id == fresh.id
    # The old certificate and NATS user stay refused; the new ones work.
    assert svc.gateway_identity_by_serial("c001") is None
    assert svc.gateway_identity_by_serial("c002").gateway_id == new_id
    assert KEY_A in revoked_nats_keys(db) and KEY_B not in revoked_nats_keys(db)
    assert [(g.name, g.id, g.status) for g in svc.list_gateways("acme")] == [("gw1", new_id, "enrolled")]
    assert svc.gateway_names() == {old_id: "gw1", new_id: "gw1"}  # the old identity's history too
    assert svc.get_tenant("acme").gateway_count == 1
    # And once more: every generation's credentials stay revoked.
    svc.revoke_gateway("acme", "gw1")
    third, secret3, _, again = svc.issue_token("acme", "gw1")
    assert again and third.id not in (old_id, new_id)
    assert {KEY_A, KEY_B} <= set(revoked_nats_keys(db))
    assert redeemable(svc, [secret, secret2, secret3]) == [secret3]


@pytest.mark.parametrize("start", ["pending", "revoked"])
def test_concurrent_new_tokens_leave_one_that_works(svc: ControllerService, start: str) -> None:
    svc.create_tenant("acme")
    _, secret, _ = svc.add_gateway("acme", "gw1")
    if start == "revoked":
        enroll(svc, secret, "c001", KEY_A)
        svc.revoke_gateway("acme", "gw1")

    def issue(_: int) -> Any:
        try:
            return svc.issue_token("acme", "gw1")
        except Conflict as exc:  # PostgreSQL: a racer that read the revoked row before the winner
            return exc

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(issue, range(12)))
    issued = [r for r in results if not isinstance(r, Exception)]
    assert issued
    if start == "revoked":
        assert sum(r[3] for r in issued) == 1  # exactly one new identity
    assert len(redeemable(svc, [secret, *(r[1] for r in issued)])) == 1
    assert len(svc.list_gateways("acme")) == 1


def test_delete_gateway_revokes_and_frees_the_name(svc: ControllerService, db: Database) -> None:
    svc.create_tenant("acme")
    _, secret, _ = svc.add_gateway("acme", "gw1")
    enroll(svc, secret, "c001", KEY_A)
    _, pending_secret, _ = svc.add_gateway("acme", "gw2")
    gone, key = svc.delete_gateway("acme", "gw1")
    assert gone.name == "gw1" and gone.status == "revoked" and key == KEY_A
    with pytest.raises(NotFound, match="acme/gw1"):
        svc.get_gateway("acme", "gw1")
    assert [g.name for g in svc.list_gateways()] == ["gw2"]
    assert svc.fleet_status().total == 1
    assert svc.gateway_identity_by_serial("c001") is None and KEY_A in revoked_nats_keys(db)
    with pytest.raises(NotFound):
        svc.delete_gateway("acme", "gw1")
    assert svc.delete_gateway("acme", "gw2")[1] == ""  # never enrolled: no NATS user to revoke
    assert redeemable(svc, [pending_secret]) == []
    fresh, _, _ = svc.add_gateway("acme", "gw1")  # the name is free for a new router
    assert fresh.status == "pending" and svc.gateway_identity_by_serial("c001") is None
    svc.revoke_gateway("acme", "gw1")
    assert svc.delete_gateway("acme", "gw1")[1] == ""  # already revoked: deleted all the same


def test_delete_tenant_revokes_everything_and_hides_it(svc: ControllerService, db: Database) -> None:
    svc.create_tenant("acme")
    svc.create_tenant("globex")
    _, secret, _ = svc.add_gateway("acme", "gw1")
    enroll(svc, secret, "c001", KEY_A)
    _, pending_secret, _ = svc.add_gateway("acme", "gw2")
    svc.add_gateway("globex", "gw1")
    svc.add_ioc("198.51.100.7", "tenant:acme")
    tenant, revoked, keys = svc.delete_tenant("acme")
    assert tenant.name == "acme" and revoked == 2 and keys == [KEY_A]
    assert [t.name for t in svc.list_tenants()] == ["globex"]
    for lookup in (lambda: svc.get_tenant("acme"), lambda: svc.add_gateway("acme", "gw3"),
                   lambda: svc.add_ioc("198.51.100.8", "tenant:acme"), lambda: svc.delete_tenant("acme"),
                   lambda: svc.set_plan("acme", "pro"), lambda: svc.get_gateway("acme", "gw1")):
        with pytest.raises(NotFound, match="acme"):
            lookup()
    with pytest.raises(AlreadyExists, match="reserved"):
        svc.create_tenant("acme")
    assert [(g.tenant, g.name) for g in svc.list_gateways()] == [("globex", "gw1")]
    assert [(g.tenant, g.name) for g in svc.fleet_status().gateways] == [("globex", "gw1")]
    assert svc.list_iocs() == []
    assert svc.gateway_identity_by_serial("c001") is None and KEY_A in revoked_nats_keys(db)
    assert redeemable(svc, [pending_secret]) == []
    assert svc.remove_ioc("198.51.100.7").held_in == ()  # a deleted tenant's scope is not named


def test_set_plan_validates_like_create(svc: ControllerService) -> None:
    svc.create_tenant("acme")
    assert svc.set_plan("acme", " Enterprise ").plan == "enterprise"
    for bad in ("gold", "", "pro; drop table tenant"):
        with pytest.raises(InvalidInput, match="plan"):
            svc.set_plan("acme", bad)
    with pytest.raises(NotFound, match="nobody"):
        svc.set_plan("nobody", "pro")
    assert svc.get_tenant("acme").plan == "enterprise"


def test_ioc_refresh_keeps_the_fields_not_given(svc: ControllerService) -> None:
    first = svc.add_ioc("198.51.100.7", ttl_seconds=7 * 86400, confidence=90, source="feed-x")
    assert not first.refreshed and first.ioc.expires_at_ms > 0
    again = svc.add_ioc("198.51.100.7")  # before the fix: expiry became never, 80, "operator"
    assert again.refreshed and again.seq == first.seq + 1
    assert (again.ioc.expires_at_ms, again.ioc.confidence, again.ioc.source) == (
        first.ioc.expires_at_ms, 90, "feed-x")
    assert again.created_at_ms == first.created_at_ms
    lower = svc.add_ioc("198.51.100.7", confidence=40)
    assert (lower.ioc.expires_at_ms, lower.ioc.confidence, lower.ioc.source) == (
        first.ioc.expires_at_ms, 40, "feed-x")
    # A second source's claim: the indicator shows the surest claim and lasts as long as the longest.
    forever = svc.add_ioc("198.51.100.7", ttl_seconds=0, confidence=50, source="analyst")
    assert (forever.ioc.expires_at_ms, forever.ioc.confidence, forever.ioc.source) == (0, 50, "analyst")
    (listed,) = svc.list_iocs()
    assert listed.ioc == forever.ioc
    with pytest.raises(InvalidInput):
        svc.add_ioc("198.51.100.7", confidence=101)
    assert svc.list_iocs()[0].ioc == forever.ioc


def test_an_expired_ioc_added_again_is_added_anew(svc: ControllerService) -> None:
    svc.add_ioc("198.51.100.7", ttl_seconds=1, confidence=30)
    time.sleep(1.1)  # expired, not yet swept by housekeeping
    again = svc.add_ioc("198.51.100.7")
    assert not again.refreshed and again.ioc.expires_at_ms == 0 and again.ioc.confidence == 80


def test_remove_names_the_scopes_that_hold_the_value(svc: ControllerService) -> None:
    svc.create_tenant("acme")
    svc.create_tenant("globex")
    svc.add_ioc("203.0.113.5", "tenant:acme")
    svc.add_ioc("203.0.113.5", "tenant:globex")
    head = svc.desired_versions(svc.tenant_id("acme"))
    result = svc.remove_ioc("203.0.113.5")
    assert not result.removed and result.held_in == ("tenant:acme", "tenant:globex")
    assert svc.desired_versions(svc.tenant_id("acme")) == head  # nothing pushed
    assert svc.remove_ioc("203.0.113.6").held_in == ()
    assert svc.remove_ioc("203.0.113.5", "tenant:acme").removed
    assert svc.remove_ioc("203.0.113.5", "tenant:acme").held_in == ("tenant:globex",)
