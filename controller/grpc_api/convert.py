"""Domain values <-> operator API messages: the only place the service's answers become protobuf.
Field names match one for one (controller/domain/models.py)."""

from __future__ import annotations

from controller.domain.models import (
    FleetStatus,
    Gateway,
    IocRecord,
    PolicyInfo,
    RemoveIocResult,
    SeqPair,
    Tenant,
    Versions,
)
from mssp.v1 import common_pb2, operator_pb2


def versions(v: Versions) -> common_pb2.Versions:
    return common_pb2.Versions(global_seq=v.global_seq, tenant_seq=v.tenant_seq, alliance_seq=v.alliance_seq)


def versions_from(wire: SeqPair) -> Versions:
    """What an agent sent, as a domain value."""
    return Versions(global_seq=wire.global_seq, tenant_seq=wire.tenant_seq, alliance_seq=wire.alliance_seq)


def tenant(t: Tenant) -> operator_pb2.Tenant:
    return operator_pb2.Tenant(
        id=t.id, name=t.name, plan=t.plan, created_at_ms=t.created_at_ms, gateway_count=t.gateway_count,
        policy_version=t.policy_version, tenant_seq=t.tenant_seq, ioc_count=t.ioc_count, sharing=t.sharing,
    )


def gateway(g: Gateway) -> operator_pb2.Gateway:
    return operator_pb2.Gateway(
        id=g.id, tenant=g.tenant, name=g.name, status=g.status.value, created_at_ms=g.created_at_ms,
        enrolled_at_ms=g.enrolled_at_ms, last_seen_ms=g.last_seen_ms, online=g.online,
        desired=versions(g.desired), applied=versions(g.applied), converged=g.converged,
        agent_version=g.agent_version, backend=g.backend, last_error=g.last_error,
        cert_serial=g.cert_serial,
        refusals=[common_pb2.Refusal(kind=r.kind, value=r.value, reason=r.reason) for r in g.refusals],
        refusals_total=g.refusals_total, ioc_budget=g.ioc_budget, left_out_by_budget=g.left_out_by_budget,
        cert_not_after_ms=g.cert_not_after_ms, cert_renewed_at_ms=g.cert_renewed_at_ms,
        renewal_overdue=g.renewal_overdue, clock_offset_ms=g.clock_offset_ms,
    )


def fleet_status(f: FleetStatus) -> operator_pb2.FleetStatusResponse:
    return operator_pb2.FleetStatusResponse(
        gateways=[gateway(g) for g in f.gateways], total=f.total, online=f.online, converged=f.converged,
    )


def policy_info(p: PolicyInfo) -> operator_pb2.PolicyInfo:
    return operator_pb2.PolicyInfo(
        tenant=p.tenant, version=p.version, yaml=p.yaml, bundle=common_pb2.PolicyBundle.FromString(p.bundle),
        updated_at_ms=p.updated_at_ms, seq=p.seq, gateway=p.gateway, effective_yaml=p.effective_yaml,
        unchanged=p.unchanged, summary=p.summary,
    )


def ioc_info(r: IocRecord) -> operator_pb2.IocInfo:
    i = r.ioc
    ioc = common_pb2.Ioc(type=int(i.type), value=i.value, expires_at_ms=i.expires_at_ms,
                         confidence=i.confidence, source=i.source)
    return operator_pb2.IocInfo(ioc=ioc, scope=r.scope, created_at_ms=r.created_at_ms, seq=r.seq,
                                refreshed=r.refreshed, sources=list(r.sources))


def remove_ioc(r: RemoveIocResult) -> operator_pb2.RemoveIocResponse:
    return operator_pb2.RemoveIocResponse(removed=r.removed, seq=r.seq, held_in=list(r.held_in))
