"""What the audit log says of one operator call: its tenant and target, the state before it, and
request and answer as JSON with secrets and bulk data taken out.

A call with no reader of its own still gets a row (before "null"): the log covers every change,
and a reader only adds what the answer alone does not show.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from controller.domain.errors import ControllerError
from controller.grpc_api import convert
from controller.service import ControllerService

# Secrets (shown once, never stored) and bulk bytes (a file being imported, a compiled bundle).
REDACTED = frozenset({"enrollment_token", "key", "token", "secret", "passphrase", "private_key"})
OMITTED = frozenset({"data", "bundle"})
_TENANT_BY_NAME = frozenset({"CreateTenant", "SetTenantPlan", "SetTenantSharing", "DeleteTenant"})
_TENANT_FROM_BEFORE = frozenset({"RevokeApiKey", "RotateApiKey"})  # the request names a key id only
_TARGET_FIELDS = ("value", "name", "id", "key_id", "period", "url")

Reader = Callable[[ControllerService, Any], Message | None]


def _gateway(s: ControllerService, r: Any) -> Message:
    return convert.gateway(s.get_gateway(r.tenant, r.name))


def _ioc(s: ControllerService, r: Any) -> Message:
    return convert.ioc_info(s.show_ioc(r.value, r.scope or "global")[0])


def _policy(s: ControllerService, tenant: str, gateway: str) -> Message:
    """The tenant's policy, or one gateway's override and the document it enforces."""
    if gateway:
        return convert.policy_info(s.policies.get_gateway_policy(tenant, gateway))
    return convert.policy_info(s.get_policy(tenant))


def _operator(s: ControllerService, r: Any) -> Message | None:
    from controller.grpc_api.admin import operator_info  # admin imports this module

    found = [o for o in s.operators.list(include_revoked=True) if o.name == r.name]
    return operator_info(found[0]) if found else None


def _api_key(s: ControllerService, r: Any) -> Message:
    from controller.grpc_api.apikeys import api_key  # apikeys imports access, which imports this

    return api_key(s.apikeys.get(r.id))


BEFORE: dict[str, Reader] = {
    **{name: (lambda s, r: convert.tenant(s.get_tenant(r.name))) for name in _TENANT_BY_NAME},
    **{name: _gateway for name in ("AddGateway", "RevokeGateway", "IssueGatewayToken", "DeleteGateway")},
    "SetPolicy": lambda s, r: _policy(s, r.tenant, r.gateway),
    "UnsetPolicy": lambda s, r: _policy(s, r.tenant, r.name),
    "RollbackPolicy": lambda s, r: _policy(s, r.target.tenant, r.target.gateway),
    "AddIoc": _ioc,
    "RemoveIoc": _ioc,
    "RevokeOperator": _operator,
    "RevokeApiKey": _api_key,
    "RotateApiKey": _api_key,
}


def plain(msg: Message | None) -> Any:
    if msg is None:
        return None
    return scrub(MessageToDict(msg, preserving_proto_field_name=True))


def scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("(redacted)" if k in REDACTED else "(omitted)" if k in OMITTED else scrub(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def before(service: ControllerService, action: str, request: Message) -> Any:
    """The state the call is about to change, as plain data; None when it does not exist yet."""
    reader = BEFORE.get(action)
    if reader is None:
        return None
    try:
        return plain(reader(service, request))
    except ControllerError:  # not there (yet), or a bad name the call itself will refuse
        return None


def tenant_of(action: str, req: dict[str, Any], before: Any = None) -> str:
    """From the request; for a call naming only an id (an API key), from the state before it."""
    if action in _TENANT_FROM_BEFORE:
        return str(before.get("tenant", "")) if isinstance(before, dict) else ""
    if action in _TENANT_BY_NAME:
        return str(req.get("name", ""))
    if isinstance(req.get("target"), dict):  # RollbackPolicy: {target: {tenant, gateway}}
        return tenant_of(action, req["target"])
    if isinstance(req.get("tenant"), str):
        return str(req["tenant"])
    options = req.get("options")
    scope = (options if isinstance(options, dict) else req).get("scope")
    if isinstance(scope, str) and scope.startswith("tenant:"):
        return scope[len("tenant:"):]
    return ""


def target_of(req: dict[str, Any]) -> str:
    if isinstance(req.get("target"), dict):
        return target_of(req["target"])
    tenant, name = req.get("tenant"), req.get("name") or req.get("gateway")
    if isinstance(tenant, str) and tenant and isinstance(name, str) and name:
        return f"{tenant}/{name}"
    for field in _TARGET_FIELDS:
        if req.get(field):
            return str(req[field])
    return str(tenant or "")


def changed_nothing(response: Message | None) -> bool:
    """An answer that says nothing was stored (RollbackPolicy to the document in force already)."""
    if response is None:
        return False
    field = response.DESCRIPTOR.fields_by_name.get("unchanged")
    return field is not None and field.type == field.TYPE_BOOL and bool(response.unchanged)


def is_dry_run(req: dict[str, Any]) -> bool:
    options = req.get("options")
    return bool(req.get("dry_run") or (isinstance(options, dict) and options.get("dry_run")))
