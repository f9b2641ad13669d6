"""API keys of the tenant API (issue 10, Keys) on real SQLite and PostgreSQL: format and checksum,
only a hash stored, revoked / expired / malformed / wrong checksum / unknown keys refused, scopes,
rotation overlap and one-time rotation under concurrency, a deleted tenant's keys."""

from __future__ import annotations

import hashlib
import re
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from controller.domain import apikeys as keys
from controller.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from controller.service import ControllerService
from controller.services.apikeys import ApiKeys
from controller.store.db import Database

T0 = 1_800_000_000_000
HOUR_MS = 3_600_000
# What a secret scanner would match (prefix, 32 random, 6 checksum).
SCANNER_RE = re.compile(r"\bmssp_[tp]k_[0-9A-Za-z]{38}\b")


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def svc(db: Database) -> ControllerService:
    service = ControllerService(db)
    service.create_tenant("acme")
    service.create_tenant("globex")
    return service


@pytest.fixture
def ak(db: Database, svc: ControllerService, clock: Clock) -> ApiKeys:
    return ApiKeys(db, clock=clock)


@pytest.fixture
def statements(db: Database) -> Iterator[list[str]]:
    """Every SQL statement the store runs while the test does (observed, not mocked)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def refused(ak: ApiKeys, presented: str) -> str:
    with pytest.raises(Unauthenticated) as exc:
        ak.authenticate(presented)
    message = str(exc.value)
    assert "\n" not in message and (not presented or presented not in message)
    return message


# -- format ------------------------------------------------------------------------------------


def test_key_format_prefix_and_checksum(ak: ApiKeys) -> None:
    info, secret = ak.create("acme")
    p_info, p_secret = ak.create_partner("cert-eu")
    assert secret.startswith("mssp_tk_") and p_secret.startswith("mssp_pk_")
    for key, row in ((secret, info), (p_secret, p_info)):
        assert len(key) == keys.KEY_LEN == 46 and SCANNER_RE.fullmatch(key)
        body, check = key[:-6], key[-6:]
        crc, digits = zlib.crc32(body.encode()), ""  # the scanner's view: base62 of the CRC32, 6 digits
        for _ in range(6):
            crc, d = divmod(crc, 62)
            digits = keys.BASE62[d] + digits
        assert check == digits and keys.key_problem(key) is None
        assert row.prefix == key[:12]
    assert info.scopes == keys.DEFAULT_SCOPES and info.state == "active" and info.expires_at_ms == 0
    assert p_info.kind == "partner" and p_info.tenant == "" and p_info.scopes == ("taxii:read",)
    assert len({ak.create("acme")[1] for _ in range(20)}) == 20


def test_stored_rows_never_contain_a_key(db: Database, ak: ApiKeys) -> None:
    secrets = [ak.create("acme", name="bi")[1], ak.create("globex", expires_seconds=600)[1],
               ak.create_partner("cert-eu")[1]]
    first = ak.list_keys("acme")[0]
    _new, rotated, _old = ak.rotate(first.id, 60)
    secrets.append(rotated)
    with db.engine.connect() as conn:
        result = conn.execute(text("SELECT * FROM api_key"))
        columns = list(result.keys())
        stored = [dict(zip(columns, r, strict=True)) for r in result]
    assert len(stored) == 4
    hashes = {r["key_hash"] for r in stored}
    for secret in secrets:
        assert hashlib.sha256(secret.encode()).hexdigest() in hashes
        for row in stored:
            for column, value in row.items():
                cell = str(value)
                assert secret not in cell, column
                assert secret[keys.DISPLAY_PREFIX_LEN:] not in cell, column  # not even the random part


# -- refusals ----------------------------------------------------------------------------------


def test_malformed_and_bad_checksum_cost_no_lookup(ak: ApiKeys, statements: list[str]) -> None:
    _info, secret = ak.create("acme")
    flipped = secret[:-1] + ("a" if secret[-1] != "a" else "b")
    body_typo = secret[:20] + ("x" if secret[20] != "x" else "y") + secret[21:]
    statements.clear()
    for bad in ("", "not-a-key", "Bearer " + secret, secret + "0", secret[:-1], " " + secret,
                "mssp_xk_" + secret[8:], "x" * 300, secret.upper()):
        assert refused(ak, bad) == "malformed API key", bad
    assert "checksum" in refused(ak, flipped) and "checksum" in refused(ak, body_typo)
    assert statements == []


def test_unknown_revoked_expired_are_refused(ak: ApiKeys, clock: Clock) -> None:
    body = "mssp_tk_" + "A" * 32
    assert refused(ak, body + keys.checksum(body)) == "unknown API key"  # well formed, never issued
    info, secret = ak.create("acme", expires_seconds=3600)
    assert ak.authenticate(secret).key_id == info.id
    clock.now = T0 + HOUR_MS - 1
    ak.authenticate(secret)
    clock.now = T0 + HOUR_MS
    assert refused(ak, secret) == "API key expired"
    assert ak.list_keys("acme")[0].state == "expired"
    other, other_secret = ak.create("acme")
    revoked = ak.revoke(other.id)
    assert revoked.state == "revoked" and revoked.revoked_at_ms == clock.now
    assert refused(ak, other_secret) == "API key revoked"


def test_revoke_twice_is_conflict_and_changes_nothing(ak: ApiKeys, clock: Clock) -> None:
    info, _secret = ak.create("acme")
    first = ak.revoke(info.id)
    clock.now += 5000
    with pytest.raises(Conflict, match="already revoked"):
        ak.revoke(info.id)
    assert ak.list_keys("acme") == [first]
    with pytest.raises(NotFound):
        ak.revoke("0" * 32)
    with pytest.raises(NotFound):
        ak.revoke("not an id")


def test_deleted_tenant_keys_stop_working(ak: ApiKeys, svc: ControllerService) -> None:
    info, secret = ak.create("acme")
    _g, keep = ak.create("globex")
    ak.authenticate(secret)
    svc.delete_tenant("acme")
    assert "revoked" in refused(ak, secret)
    assert ak.authenticate(keep).tenant_id == svc.tenant_id("globex")
    assert [k.tenant for k in ak.list_keys()] == ["globex"]
    for call in (lambda: ak.create("acme"), lambda: ak.rotate(info.id, 60), lambda: ak.revoke(info.id),
                 lambda: ak.list_keys("acme")):
        with pytest.raises(NotFound):
            call()


# -- scopes ------------------------------------------------------------------------------------


def test_scopes_are_validated_strictly(ak: ApiKeys) -> None:
    with pytest.raises(InvalidInput, match="allowed: gateways:read, usage:read") as exc:
        ak.create("acme", scopes=["usage:read", "billing:write"])
    assert "billing:write" in str(exc.value)
    with pytest.raises(InvalidInput, match="partner-key scope"):
        ak.create("acme", scopes=["taxii:read"])
    with pytest.raises(InvalidInput, match="invalid partner name"):
        ak.create_partner("CERT EU")
    with pytest.raises(InvalidInput, match="control characters"):
        ak.create("acme", name="bi\x1b[31m")
    with pytest.raises(InvalidInput):
        ak.create("acme", expires_seconds=-1)
    with pytest.raises(NotFound):
        ak.create("nobody")
    info, _ = ak.create("acme", scopes=["usage:read", "indicators:write", "usage:read"])
    assert info.scopes == ("indicators:write", "usage:read")
    assert ak.list_keys() == [info]


def test_principal_require(ak: ApiKeys, svc: ControllerService) -> None:
    _info, secret = ak.create("acme", scopes=["usage:read"])
    principal = ak.authenticate(secret)
    assert principal.kind == "tenant" and principal.tenant_id == svc.tenant_id("acme")
    principal.require("usage:read")
    with pytest.raises(PermissionDenied, match="lacks scope reports:read"):
        principal.require("reports:read")
    partner = ak.authenticate(ak.create_partner("cert-eu")[1])
    assert partner.kind == "partner" and partner.tenant_id is None and partner.scopes == {"taxii:read"}
    partner.require("taxii:read")
    with pytest.raises(PermissionDenied):
        partner.require("usage:read")


# -- rotation ----------------------------------------------------------------------------------


def test_rotation_overlap(ak: ApiKeys, clock: Clock) -> None:
    info, old_secret = ak.create("acme", scopes=["usage:read"], expires_seconds=90 * 86400, name="bi")
    clock.now = T0 + 10 * HOUR_MS
    new, new_secret, old = ak.rotate(info.id, 3600)
    assert new.id != info.id and new_secret != old_secret
    assert (new.tenant, new.scopes, new.name, new.kind) == ("acme", ("usage:read",), "bi", "tenant")
    assert new.expires_at_ms == clock.now + 90 * 86400 * 1000  # same lifetime, from the rotation
    assert old.replaced_by == new.id and old.expires_at_ms == clock.now + HOUR_MS
    clock.now += HOUR_MS - 1
    assert ak.authenticate(old_secret).key_id == info.id
    assert ak.authenticate(new_secret).key_id == new.id
    clock.now += 1
    assert refused(ak, old_secret) == "API key expired"
    assert ak.authenticate(new_secret).key_id == new.id
    with pytest.raises(Conflict, match="already rotated"):
        ak.rotate(info.id, 60)


def test_rotation_never_extends_the_old_key(ak: ApiKeys, clock: Clock) -> None:
    info, _ = ak.create("acme", expires_seconds=600)
    _new, _s, old = ak.rotate(info.id, 86400)
    assert old.expires_at_ms == T0 + 600_000
    forever, _ = ak.create("acme")
    new, _s, _old = ak.rotate(forever.id, 0)
    assert new.expires_at_ms == 0 and _old.expires_at_ms == clock.now and _old.state == "expired"


def test_rotating_revoked_or_expired_is_conflict(ak: ApiKeys, clock: Clock) -> None:
    info, _ = ak.create("acme", expires_seconds=60)
    revoked, _ = ak.create("acme")
    ak.revoke(revoked.id)
    with pytest.raises(Conflict, match="revoked"):
        ak.rotate(revoked.id, 60)
    clock.now += 60_000
    with pytest.raises(Conflict, match="expired"):
        ak.rotate(info.id, 60)
    with pytest.raises(InvalidInput):
        ak.rotate(info.id, -5)
    assert len(ak.list_keys()) == 2


def test_concurrent_rotation_has_one_successor(db_url: str, db: Database, svc: ControllerService) -> None:
    info, _secret = ApiKeys(db).create("acme")
    racers = 6
    barrier = threading.Barrier(racers)
    results: list[tuple[str, str]] = []
    lock = threading.Lock()

    def race() -> None:
        own = Database(db_url)  # its own engine: the store's locking decides, not a shared pool
        try:
            barrier.wait(timeout=30)
            try:
                new, _s, _old = ApiKeys(own).rotate(info.id, 60)
                outcome = ("rotated", new.id)
            except Conflict as exc:
                outcome = ("conflict", str(exc))
            except Exception as exc:  # reported, so a failure shows itself
                outcome = ("error", repr(exc))
            with lock:
                results.append(outcome)
        finally:
            own.dispose()

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [r for kind, r in results if kind == "rotated"]
    assert len(results) == racers and len(winners) == 1, results
    assert sorted(kind for kind, _ in results) == ["conflict"] * (racers - 1) + ["rotated"], results
    listed = ApiKeys(db).list_keys("acme")
    assert len(listed) == 2
    assert {k.id: k.replaced_by for k in listed} == {info.id: winners[0], winners[0]: ""}


# -- last used ---------------------------------------------------------------------------------


def test_last_used_is_written_at_most_once_a_minute(ak: ApiKeys, clock: Clock,
                                                    statements: list[str]) -> None:
    _info, secret = ak.create("acme")
    statements.clear()
    ak.authenticate(secret)
    writes = [s for s in statements if s.lstrip().upper().startswith("UPDATE")]
    assert len(writes) == 1
    assert ak.list_keys()[0].last_used_at_ms == T0
    statements.clear()
    for step in (1000, 30_000, 59_000):
        clock.now = T0 + step
        ak.authenticate(secret)
    assert not [s for s in statements if s.lstrip().upper().startswith(("UPDATE", "INSERT"))]
    assert ak.list_keys()[0].last_used_at_ms == T0
    clock.now = T0 + 61_000
    ak.authenticate(secret)
    assert ak.list_keys()[0].last_used_at_ms == T0 + 61_000
