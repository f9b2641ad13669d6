"""The service layer speaks domain types: frozen dataclasses and enums out, protobuf only in the gRPC
adapter (controller/grpc_api/convert.py); desired versions have one definition; name lookups are
direct reads (what the telemetry servicer labels rows with)."""

from __future__ import annotations

import ast
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from controller.domain.errors import NotFound
from controller.domain.ioc import IocKind
from controller.domain.models import GatewayStatus, Versions
from controller.grpc_api import convert
from controller.service import ControllerService
from controller.status_recorder import StatusRecorder
from controller.store.db import Database
from mssp.common.channels import ALLIANCE_CHANNEL, GLOBAL_CHANNEL, tenant_channel
from mssp.v1 import common_pb2, operator_pb2

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def svc(db: Database) -> ControllerService:
    return ControllerService(db, token_ttl_seconds=3600)


def frozen(value: object) -> bool:
    params = getattr(type(value), "__dataclass_params__", None)
    return dataclasses.is_dataclass(value) and params is not None and params.frozen


def test_answers_are_frozen_domain_values(svc: ControllerService) -> None:
    tenant = svc.create_tenant("acme", "pro")
    gateway, _, _ = svc.add_gateway("acme", "gw1")
    ioc = svc.add_ioc("198.51.100.7", "tenant:acme", ttl_seconds=60, source="feed-x", confidence=90)
    policy = svc.set_policy("acme", "default_action: deny\nrules: []\n")
    removed = svc.remove_ioc("203.0.113.9")
    answers = [tenant, gateway, ioc, ioc.ioc, policy, removed, svc.fleet_status(), svc.get_policy("acme"),
               svc.desired_versions(tenant.id), *svc.list_tenants(), *svc.list_gateways(), *svc.list_iocs()]
    assert all(frozen(a) for a in answers), [type(a) for a in answers if not frozen(a)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        tenant.name = "other"  # type: ignore[misc]
    assert gateway.status is GatewayStatus.PENDING and gateway.status == "pending"
    assert ioc.ioc.type is IocKind.IPV4 and ioc.scope == "tenant:acme" and ioc.seq == 1
    assert (policy.version, policy.seq) == (1, 2)
    assert common_pb2.PolicyBundle.FromString(policy.bundle).default_action == common_pb2.ACTION_DENY


def test_the_adapter_converts_field_for_field(svc: ControllerService) -> None:
    svc.create_tenant("acme")
    gateway, _, _ = svc.add_gateway("acme", "gw1")
    wire = convert.gateway(gateway)
    assert isinstance(wire, operator_pb2.Gateway)
    assert (wire.tenant, wire.name, wire.status, wire.online, wire.converged) == ("acme", "gw1", "pending",
                                                                                 False, False)
    ioc = convert.ioc_info(svc.add_ioc("evil.example", ttl_seconds=0, confidence=70))
    assert ioc == operator_pb2.IocInfo(
        ioc=common_pb2.Ioc(type=common_pb2.IOC_TYPE_DOMAIN, value="evil.example", confidence=70,
                           source=ioc.ioc.source),
        scope="global", created_at_ms=ioc.created_at_ms, seq=1,
    )
    default = convert.policy_info(svc.get_policy("acme"))
    assert default.version == 0 and default.bundle.default_action == common_pb2.ACTION_ALLOW
    assert convert.remove_ioc(svc.remove_ioc("evil.example")) == operator_pb2.RemoveIocResponse(removed=True,
                                                                                               seq=2)
    assert convert.versions(Versions(3, 4)) == common_pb2.Versions(global_seq=3, tenant_seq=4)
    assert convert.versions_from(common_pb2.Versions(global_seq=3, tenant_seq=4)) == Versions(3, 4)
    wire = common_pb2.Versions(global_seq=3, tenant_seq=4, alliance_seq=5)
    assert convert.versions(convert.versions_from(wire)) == wire


async def test_desired_versions_agree_wherever_they_are_read(svc: ControllerService) -> None:
    acme = svc.create_tenant("acme")
    _, secret, _ = svc.add_gateway("acme", "gw1")
    ticket = svc.redeem_enrollment_token(secret)
    svc.add_ioc("198.51.100.7")
    svc.add_ioc("198.51.100.8", "tenant:acme")
    svc.set_policy("acme", "default_action: deny\nrules: []\n")
    svc.add_ioc("198.51.100.9", "alliance")  # acme does not share (yet): not part of its desired state
    at_enrollment = svc.complete_enrollment(ticket.gateway_id, cert_serial="0a", nats_public_key="U",
                                            agent_version="1")
    assert at_enrollment == Versions(global_seq=1, tenant_seq=2)
    assert svc.channel_heads() == {GLOBAL_CHANNEL: 1, tenant_channel(acme.id): 2, ALLIANCE_CHANNEL: 1}
    for sharing, expected in ((False, at_enrollment), (True, Versions(1, 2, alliance_seq=1))):
        svc.set_sharing("acme", sharing)
        with ThreadPoolExecutor(max_workers=1) as pool:
            acked = await StatusRecorder(svc, pool).desired(acme.id, sharing)
        (listed,) = svc.list_gateways()
        assert acked == listed.desired == svc.get_gateway("acme", "gw1").desired == expected
        assert svc.desired_versions(acme.id) == svc.fleet_status().gateways[0].desired == expected


def test_direct_name_lookups(svc: ControllerService) -> None:
    acme, globex = svc.create_tenant("acme"), svc.create_tenant("globex")
    a1, _, _ = svc.add_gateway("acme", "a1")
    g1, _, _ = svc.add_gateway("globex", "g1")
    assert svc.tenant_id("acme") == acme.id
    with pytest.raises(NotFound, match="nobody"):
        svc.tenant_id("nobody")
    assert svc.tenant_names() == {acme.id: "acme", globex.id: "globex"}
    assert svc.gateway_names() == {a1.id: "a1", g1.id: "g1"}
    assert svc.gateway_names(globex.id) == {g1.id: "g1"}


def test_the_service_layer_never_builds_operator_messages() -> None:
    """Protobuf conversion of the service's answers lives in controller/grpc_api only."""
    paths = [ROOT / "controller/service.py", *sorted((ROOT / "controller/services").glob("*.py")),
             ROOT / "controller/domain/models.py"]
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "mssp.v1":
                found += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("operator_pb2")]
            elif isinstance(node, ast.Import):
                found += [f"{path.name}: {a.name}" for a in node.names if "operator_pb2" in a.name]
    assert found == []
