"""Push size and resync cost on a real store (SQLite and PostgreSQL): a policy too large for one
broker message is refused, a long history is answered by a snapshot, an unpublishable row never
reaches a gateway as a delta."""

from __future__ import annotations

import pytest

from controller.domain.errors import InvalidInput
from controller.domain.policy.yaml_reader import MAX_POLICY_BYTES
from controller.service import ControllerService
from controller.services import channels
from controller.store.db import Database
from gateway_agent.state import DesiredState
from mssp.common.channels import GLOBAL_CHANNEL
from mssp.common.parts import MAX_POLICY_BUNDLE_BYTES, MAX_PUSH_BYTES
from mssp.v1 import common_pb2, push_pb2


@pytest.fixture
def svc(db: Database) -> ControllerService:
    return ControllerService(db, token_ttl_seconds=3600)


def near_limit_policy() -> str:
    """A valid policy just under the 1 MiB document limit: long, distinct domains in 50-name rules."""
    head = "default_action: deny\nrules:\n"
    rules: list[str] = []
    size, n = len(head), 0
    while True:
        names = [f"{'a' * 60}.{'b' * 60}.{'c' * 60}.d{n + i:06d}.example" for i in range(50)]
        rule = f"  - name: r{len(rules)}\n    action: deny\n    domains: [{', '.join(names)}]\n"
        if size + len(rule) > MAX_POLICY_BYTES:
            return head + "".join(rules)
        rules.append(rule)
        size, n = size + len(rule), n + 50


def test_a_policy_too_large_for_one_push_is_refused_and_changes_nothing(svc: ControllerService) -> None:
    svc.create_tenant("acme")
    svc.set_policy("acme", "default_action: deny\nrules: []\n")
    heads, outbox = svc.channel_heads(), svc.unpublished_outbox(10)
    text = near_limit_policy()
    assert len(text.encode()) <= MAX_POLICY_BYTES  # the document itself is within its limit
    with pytest.raises(InvalidInput, match=f"over the {MAX_POLICY_BUNDLE_BYTES:,}-byte limit"):
        svc.set_policy("acme", text)
    assert svc.channel_heads() == heads and svc.unpublished_outbox(10) == outbox
    info = svc.get_policy("acme")
    assert info.version == 1 and info.yaml == "default_action: deny\nrules: []\n"


def test_sync_from_zero_with_a_long_history_gets_a_snapshot(svc: ControllerService) -> None:
    """300 pushes (a feed refreshing 30 indicators) cost one snapshot, not 300 signed deltas."""
    acme = svc.create_tenant("acme")
    for i in range(300):
        svc.add_ioc(f"198.51.100.{i % 30 + 1}", confidence=50 + i % 7)
    pushes = svc.sync_pushes(acme.id, common_pb2.Versions())
    assert [(p.channel, p.WhichOneof("body")) for p in pushes] == [(GLOBAL_CHANNEL, "snapshot")]
    state = DesiredState(f"tenant:{acme.id}")
    for push in pushes:
        state.apply(push)
    assert state.versions().global_seq == 300 and state.ioc_count() == 30
    # A short gap is still served as deltas.
    short = svc.sync_pushes(acme.id, common_pb2.Versions(global_seq=298, tenant_seq=0))
    assert [(p.channel, p.seq, p.WhichOneof("body")) for p in short if p.channel == GLOBAL_CHANNEL] == [
        (GLOBAL_CHANNEL, 299, "iocs"), (GLOBAL_CHANNEL, 300, "iocs")]


def test_a_delta_too_large_to_travel_is_replaced_by_a_snapshot(svc: ControllerService) -> None:
    acme = svc.create_tenant("acme")
    svc.add_ioc("198.51.100.1")
    with svc.db.session() as s:  # what a runaway bulk import would commit
        channels.append_push(s, GLOBAL_CHANNEL, iocs=push_pb2.IocDelta(upsert=[common_pb2.Ioc(
            type=common_pb2.IOC_TYPE_DOMAIN, value="huge.example", source="x" * (MAX_PUSH_BYTES + 1))]))
    svc.add_ioc("198.51.100.2")
    pushes = svc.sync_pushes(acme.id, common_pb2.Versions(global_seq=1, tenant_seq=0))
    assert [(p.seq, p.WhichOneof("body")) for p in pushes if p.channel == GLOBAL_CHANNEL] == [(3, "snapshot")]
    assert svc.sync_pushes(acme.id, common_pb2.Versions(global_seq=2))[0].WhichOneof("body") == "iocs"
