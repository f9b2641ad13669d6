"""AdminService: named operators and the audit log (msspctl operator / audit)."""

from __future__ import annotations

import grpc

from controller.grpc_api.access import OperatorCalls, authenticate_operator
from controller.grpc_api.errors import maps_domain_errors
from controller.operators import ADMIN, BOOTSTRAP, acting
from controller.services.audit import AuditRecord
from controller.services.operators import OperatorInfo
from mssp.v1 import admin_pb2, admin_pb2_grpc

Ctx = grpc.aio.ServicerContext
BOOTSTRAP_INFO = admin_pb2.OperatorInfo(name=BOOTSTRAP, role=ADMIN, bootstrap=True)


def operator_info(o: OperatorInfo) -> admin_pb2.OperatorInfo:
    return admin_pb2.OperatorInfo(
        name=o.name, role=o.role, prefix=o.prefix, created_at_ms=o.created_at_ms, created_by=o.created_by,
        revoked_at_ms=o.revoked_at_ms, last_used_at_ms=o.last_used_at_ms,
    )


def audit_event(r: AuditRecord) -> admin_pb2.AuditEvent:
    return admin_pb2.AuditEvent(
        id=r.id, at_ms=r.at_ms, operator=r.operator, role=r.role, action=r.action, tenant=r.tenant,
        target=r.target, request_json=r.request, before_json=r.before, after_json=r.after,
    )


class AdminServicer(OperatorCalls, admin_pb2_grpc.AdminServiceServicer):

    @maps_domain_errors
    async def CreateOperator(
        self, request: admin_pb2.CreateOperatorRequest, context: Ctx
    ) -> admin_pb2.CreatedOperator:
        by = acting()
        info, token = await self._call(context, self.service.operators.create, request.name, request.role,
                                       created_by=by.name if by else "")
        return admin_pb2.CreatedOperator(operator=operator_info(info), token=token)

    @maps_domain_errors
    async def ListOperators(
        self, request: admin_pb2.ListOperatorsRequest, context: Ctx
    ) -> admin_pb2.ListOperatorsResponse:
        found = await self._call(context, self.service.operators.list,
                                 include_revoked=request.include_revoked)
        return admin_pb2.ListOperatorsResponse(operators=[BOOTSTRAP_INFO, *(operator_info(o) for o in found)])

    @maps_domain_errors
    async def RevokeOperator(self, request: admin_pb2.OperatorRef, context: Ctx) -> admin_pb2.OperatorInfo:
        return operator_info(await self._call(context, self.service.operators.revoke, request.name))

    @maps_domain_errors
    async def WhoAmI(self, request: admin_pb2.WhoAmIRequest, context: Ctx) -> admin_pb2.OperatorInfo:
        authenticate_operator(context, self._digest)
        actor = acting()
        if actor is None or actor.bootstrap:
            return BOOTSTRAP_INFO
        found = await self._call(context, self.service.operators.list)
        return next((operator_info(o) for o in found if o.name == actor.name),
                    admin_pb2.OperatorInfo(name=actor.name, role=actor.role))

    @maps_domain_errors
    async def ListAudit(
        self, request: admin_pb2.ListAuditRequest, context: Ctx
    ) -> admin_pb2.ListAuditResponse:
        records, truncated = await self._call(
            context, self.service.audit.list, tenant=request.tenant, since_ms=request.since_ms,
            operator=request.operator, action=request.action, limit=request.limit,
        )
        return admin_pb2.ListAuditResponse(events=[audit_event(r) for r in records], truncated=truncated)
