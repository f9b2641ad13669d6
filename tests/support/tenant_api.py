"""A small world for tenant API tests: two tenants with overlapping gateway names, real telemetry
folded in by the real ingest, real API keys; and the HTTP client over create_app."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.api.limits import ApiLimits
from controller.service import ControllerService
from controller.services.tenant_scope import current_period
from controller.store.db import Database
from controller.telemetry.ingest import ingest
from mssp.common.metrics import CATEGORY_BYTES, DNS_BLOCKED, HOST_EGRESS, IOC_HITS
from tests.support.telemetry_batches import NOW, make_batch

A, B = "acme", "globex"
NAMES = ("edge", "office", "warehouse")  # both tenants have all three
PERIOD = current_period(NOW)
BATCHES = 4  # per gateway, 30 s each
IOC_HOSTS = ("192.0.2.21", "192.0.2.22", "192.0.2.23")


@dataclass
class World:
    db: Database
    service: ControllerService
    tenant_ids: dict[str, str] = field(default_factory=dict)
    gateway_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # tenant -> a key with the default scopes

    def gateways_of(self, tenant: str) -> set[str]:
        return {gid for (t, _n), gid in self.gateway_ids.items() if t == tenant}

    def client(self, limits: ApiLimits | None = None, **kw: object) -> TestClient:
        return TestClient(create_app(self.service, limits or ApiLimits(rate_limit=100_000)), **kw)  # type: ignore[arg-type]

    def auth(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}


def make_service(db: Database, plans_path: Path) -> ControllerService:
    return ControllerService(db, plans_path=plans_path)


def build_world(db: Database, tmp_path: Path) -> World:
    world = World(db=db, service=make_service(db, tmp_path / "plans.yaml"))
    svc = world.service
    for t_index, tenant in enumerate((A, B)):
        world.tenant_ids[tenant] = svc.create_tenant(tenant).id
        batches = []
        for g_index, name in enumerate(NAMES):
            gid = svc.add_gateway(tenant, name)[0].id
            world.gateway_ids[(tenant, name)] = gid
            for seq in range(1, BATCHES + 1):
                records = [(HOST_EGRESS, "192.0.2.10", seq, 1000 * (t_index + 1), 0),
                           (CATEGORY_BYTES, "cloud-storage|192.0.2.10", 1, 500, 0)]
                if seq == 1:  # one batch per gateway carries IOC hits from three hosts: same at_ms
                    records += [(IOC_HITS, f"203.0.113.{50 + t_index}|{h}", 2, 120, 0) for h in IOC_HOSTS]
                    records.append((DNS_BLOCKED, f"bad{t_index}.example|192.0.2.10", 0, 0, 1))
                batches.append(make_batch(gid, seq, records, tenant=world.tenant_ids[tenant],
                                          end_ms=NOW - (BATCHES - seq) * 30_000 - g_index))
        ingest(db, batches)
        world.keys[tenant] = svc.apikeys.create(tenant)[1]
    return world
