"""Decay of feed and import claims (MISP's polynomial model) and its housekeeping (issue 11)."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from controller.domain.decay import DAY_MS, DecayModel
from controller.domain.errors import InvalidInput
from controller.service import ControllerService
from controller.services.intel_import import ImportOptions
from controller.store.db import Database
from controller.store.intel_models import Feed, IocClaim
from controller.store.models import Ioc
from mssp.common.clock import now_ms


def test_the_polynomial_model_matches_misp_defaults() -> None:
    model = DecayModel()  # lifetime 120 days, speed 2, threshold 30
    assert model.score(80, 0) == 80
    assert model.score(80, 30 * DAY_MS) == pytest.approx(80 * (1 - (30 / 120) ** 0.5))  # 40.0
    assert model.score(80, 120 * DAY_MS) == 0 and model.score(80, 400 * DAY_MS) == 0
    cutoff = model.cutoff_age_ms(80)
    assert cutoff == pytest.approx(120 * DAY_MS * (1 - 30 / 80) ** 2, abs=1)  # 46.875 days
    assert model.score(80, cutoff - 1000) > 30 > model.score(80, cutoff + 1000)
    assert model.cutoff_age_ms(30) == model.cutoff_age_ms(20) == 120 * DAY_MS  # no flapping
    for bad in ({"lifetime_days": 0}, {"speed": -1}, {"threshold": 101}):
        with pytest.raises(InvalidInput):
            DecayModel(**bad)  # type: ignore[arg-type]


def age(db: Database, source: str, days: float) -> None:
    with db.session() as s:
        s.exec(update(IocClaim).where(col(IocClaim.source) == source)  # type: ignore[call-overload]
               .values(last_seen_ms=now_ms() - int(days * DAY_MS)))


def test_housekeeping_withdraws_decayed_claims_only(db: Database) -> None:
    svc = ControllerService(db, decay=DecayModel())
    svc.importer.import_feed(b"198.51.100.1\n198.51.100.2\n", ImportOptions(fmt="plain", source="old-list"))
    svc.importer.import_feed(b"198.51.100.3\n", ImportOptions(fmt="plain", source="recent-list"))
    svc.importer.import_feed(b"198.51.100.2\n", ImportOptions(fmt="plain"), source="feed:live", sync=True)
    svc.add_ioc("198.51.100.4", source="analyst")  # an operator's add: no decay
    age(db, "old-list", 50)
    age(db, "recent-list", 40)
    age(db, "analyst", 500)
    age(db, "feed:live", 90)  # re-stated by the feed's last run, just now
    with db.session() as s:
        s.add(Feed(name="live", kind="path", location="/dev/null", format="plain", channel="global",
                   every_seconds=3600, last_success_ms=now_ms(), created_at_ms=now_ms()))
    assert svc.decay_iocs() == 1  # .1 goes; .2 stays, the live feed still claims it
    assert sorted(r.ioc.value for r in svc.list_iocs()) == ["198.51.100.2", "198.51.100.3", "198.51.100.4"]
    (two,) = [r for r in svc.list_iocs() if r.ioc.value == "198.51.100.2"]
    assert two.ioc.source == "feed:live"
    assert svc.decay_iocs() == 0  # nothing more to do: no second removal push
    age(db, "recent-list", 50)  # past its cutoff, but the list says it again first: t starts over
    again = svc.importer.import_feed(b"198.51.100.3\n", ImportOptions(fmt="plain", source="recent-list"))
    assert again.unchanged == 1
    assert svc.decay_iocs() == 0 and len(svc.list_iocs()) == 3


def test_the_migration_gives_every_stored_indicator_its_source_claim(db_url: str) -> None:
    """0007 on a database with indicators in it: each becomes its source's claim (SQLite and PostgreSQL)."""
    from alembic import command

    db = Database(db_url)
    command.upgrade(db.alembic_config(), "0006_tenant_api")
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO ioc (channel, type, value, source, confidence, created_at_ms, expires_at_ms, seq)"
            " VALUES ('global', 1, '198.51.100.80', 'analyst', 70, 1000, 0, 1)")
    db.upgrade()
    svc = ControllerService(db)
    (record,) = svc.list_iocs()
    assert (record.ioc.value, record.sources) == ("198.51.100.80", ("analyst",))
    _, (claim,) = svc.show_ioc("198.51.100.80")
    assert (claim.source, claim.confidence, claim.decays, claim.last_seen_ms) == ("analyst", 70, False, 1000)
    with db.session(readonly=True) as s:
        assert s.exec(select(Ioc.updated_at_ms)).one() == 1000
    db.dispose()
