from mssp.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ShowCaRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RolloverCaRequest(_message.Message):
    __slots__ = ("overlap_seconds", "force")
    OVERLAP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    overlap_seconds: int
    force: bool
    def __init__(self, overlap_seconds: _Optional[int] = ..., force: _Optional[bool] = ...) -> None: ...

class CaCertificate(_message.Message):
    __slots__ = ("fingerprint", "subject", "not_before_ms", "not_after_ms")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    subject: str
    not_before_ms: int
    not_after_ms: int
    def __init__(self, fingerprint: _Optional[str] = ..., subject: _Optional[str] = ..., not_before_ms: _Optional[int] = ..., not_after_ms: _Optional[int] = ...) -> None: ...

class CaStatus(_message.Message):
    __slots__ = ("current", "next", "previous", "overlap_ends_ms", "finished_at_ms", "gateways_enrolled", "gateways_on_old_ca")
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_ENDS_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    GATEWAYS_ENROLLED_FIELD_NUMBER: _ClassVar[int]
    GATEWAYS_ON_OLD_CA_FIELD_NUMBER: _ClassVar[int]
    current: CaCertificate
    next: CaCertificate
    previous: CaCertificate
    overlap_ends_ms: int
    finished_at_ms: int
    gateways_enrolled: int
    gateways_on_old_ca: int
    def __init__(self, current: _Optional[_Union[CaCertificate, _Mapping]] = ..., next: _Optional[_Union[CaCertificate, _Mapping]] = ..., previous: _Optional[_Union[CaCertificate, _Mapping]] = ..., overlap_ends_ms: _Optional[int] = ..., finished_at_ms: _Optional[int] = ..., gateways_enrolled: _Optional[int] = ..., gateways_on_old_ca: _Optional[int] = ...) -> None: ...

class ListSigningKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateSigningKeyRequest(_message.Message):
    __slots__ = ("overlap_seconds", "force")
    OVERLAP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    overlap_seconds: int
    force: bool
    def __init__(self, overlap_seconds: _Optional[int] = ..., force: _Optional[bool] = ...) -> None: ...

class SigningKeyInfo(_message.Message):
    __slots__ = ("key_id", "active", "created_at_ms", "retires_at_ms")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    RETIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    active: bool
    created_at_ms: int
    retires_at_ms: int
    def __init__(self, key_id: _Optional[str] = ..., active: _Optional[bool] = ..., created_at_ms: _Optional[int] = ..., retires_at_ms: _Optional[int] = ...) -> None: ...

class SigningKeyList(_message.Message):
    __slots__ = ("keys", "announced")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    ANNOUNCED_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[SigningKeyInfo]
    announced: bool
    def __init__(self, keys: _Optional[_Iterable[_Union[SigningKeyInfo, _Mapping]]] = ..., announced: _Optional[bool] = ...) -> None: ...

class TenantRef(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GatewayRef(_message.Message):
    __slots__ = ("tenant", "name")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    name: str
    def __init__(self, tenant: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class CreateTenantRequest(_message.Message):
    __slots__ = ("name", "plan")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    name: str
    plan: str
    def __init__(self, name: _Optional[str] = ..., plan: _Optional[str] = ...) -> None: ...

class Tenant(_message.Message):
    __slots__ = ("id", "name", "plan", "created_at_ms", "gateway_count", "policy_version", "tenant_seq", "ioc_count", "sharing")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_COUNT_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    TENANT_SEQ_FIELD_NUMBER: _ClassVar[int]
    IOC_COUNT_FIELD_NUMBER: _ClassVar[int]
    SHARING_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    plan: str
    created_at_ms: int
    gateway_count: int
    policy_version: int
    tenant_seq: int
    ioc_count: int
    sharing: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., plan: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., gateway_count: _Optional[int] = ..., policy_version: _Optional[int] = ..., tenant_seq: _Optional[int] = ..., ioc_count: _Optional[int] = ..., sharing: _Optional[bool] = ...) -> None: ...

class SetTenantSharingRequest(_message.Message):
    __slots__ = ("name", "sharing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHARING_FIELD_NUMBER: _ClassVar[int]
    name: str
    sharing: bool
    def __init__(self, name: _Optional[str] = ..., sharing: _Optional[bool] = ...) -> None: ...

class SetTenantPlanRequest(_message.Message):
    __slots__ = ("name", "plan")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    name: str
    plan: str
    def __init__(self, name: _Optional[str] = ..., plan: _Optional[str] = ...) -> None: ...

class DeleteTenantResponse(_message.Message):
    __slots__ = ("tenant", "gateways_revoked")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    GATEWAYS_REVOKED_FIELD_NUMBER: _ClassVar[int]
    tenant: Tenant
    gateways_revoked: int
    def __init__(self, tenant: _Optional[_Union[Tenant, _Mapping]] = ..., gateways_revoked: _Optional[int] = ...) -> None: ...

class ListTenantsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTenantsResponse(_message.Message):
    __slots__ = ("tenants",)
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[Tenant]
    def __init__(self, tenants: _Optional[_Iterable[_Union[Tenant, _Mapping]]] = ...) -> None: ...

class AddGatewayRequest(_message.Message):
    __slots__ = ("tenant", "name", "token_ttl_seconds")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    name: str
    token_ttl_seconds: int
    def __init__(self, tenant: _Optional[str] = ..., name: _Optional[str] = ..., token_ttl_seconds: _Optional[int] = ...) -> None: ...

class AddGatewayResponse(_message.Message):
    __slots__ = ("gateway", "enrollment_token", "token_expires_at_ms", "new_identity")
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    NEW_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    gateway: Gateway
    enrollment_token: str
    token_expires_at_ms: int
    new_identity: bool
    def __init__(self, gateway: _Optional[_Union[Gateway, _Mapping]] = ..., enrollment_token: _Optional[str] = ..., token_expires_at_ms: _Optional[int] = ..., new_identity: _Optional[bool] = ...) -> None: ...

class IssueGatewayTokenRequest(_message.Message):
    __slots__ = ("tenant", "name", "token_ttl_seconds")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    name: str
    token_ttl_seconds: int
    def __init__(self, tenant: _Optional[str] = ..., name: _Optional[str] = ..., token_ttl_seconds: _Optional[int] = ...) -> None: ...

class ListGatewaysRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class ListGatewaysResponse(_message.Message):
    __slots__ = ("gateways",)
    GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    gateways: _containers.RepeatedCompositeFieldContainer[Gateway]
    def __init__(self, gateways: _Optional[_Iterable[_Union[Gateway, _Mapping]]] = ...) -> None: ...

class Gateway(_message.Message):
    __slots__ = ("id", "tenant", "name", "status", "created_at_ms", "enrolled_at_ms", "last_seen_ms", "online", "desired", "applied", "converged", "agent_version", "backend", "last_error", "cert_serial", "refusals", "refusals_total", "ioc_budget", "left_out_by_budget", "cert_not_after_ms", "cert_renewed_at_ms", "renewal_overdue", "clock_offset_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    CERT_SERIAL_FIELD_NUMBER: _ClassVar[int]
    REFUSALS_FIELD_NUMBER: _ClassVar[int]
    REFUSALS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    IOC_BUDGET_FIELD_NUMBER: _ClassVar[int]
    LEFT_OUT_BY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    CERT_NOT_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    CERT_RENEWED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    RENEWAL_OVERDUE_FIELD_NUMBER: _ClassVar[int]
    CLOCK_OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant: str
    name: str
    status: str
    created_at_ms: int
    enrolled_at_ms: int
    last_seen_ms: int
    online: bool
    desired: _common_pb2.Versions
    applied: _common_pb2.Versions
    converged: bool
    agent_version: str
    backend: str
    last_error: str
    cert_serial: str
    refusals: _containers.RepeatedCompositeFieldContainer[_common_pb2.Refusal]
    refusals_total: int
    ioc_budget: int
    left_out_by_budget: int
    cert_not_after_ms: int
    cert_renewed_at_ms: int
    renewal_overdue: bool
    clock_offset_ms: int
    def __init__(self, id: _Optional[str] = ..., tenant: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., enrolled_at_ms: _Optional[int] = ..., last_seen_ms: _Optional[int] = ..., online: _Optional[bool] = ..., desired: _Optional[_Union[_common_pb2.Versions, _Mapping]] = ..., applied: _Optional[_Union[_common_pb2.Versions, _Mapping]] = ..., converged: _Optional[bool] = ..., agent_version: _Optional[str] = ..., backend: _Optional[str] = ..., last_error: _Optional[str] = ..., cert_serial: _Optional[str] = ..., refusals: _Optional[_Iterable[_Union[_common_pb2.Refusal, _Mapping]]] = ..., refusals_total: _Optional[int] = ..., ioc_budget: _Optional[int] = ..., left_out_by_budget: _Optional[int] = ..., cert_not_after_ms: _Optional[int] = ..., cert_renewed_at_ms: _Optional[int] = ..., renewal_overdue: _Optional[bool] = ..., clock_offset_ms: _Optional[int] = ...) -> None: ...

class SetPolicyRequest(_message.Message):
    __slots__ = ("tenant", "yaml", "gateway")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    yaml: str
    gateway: str
    def __init__(self, tenant: _Optional[str] = ..., yaml: _Optional[str] = ..., gateway: _Optional[str] = ...) -> None: ...

class PolicyInfo(_message.Message):
    __slots__ = ("tenant", "version", "yaml", "bundle", "updated_at_ms", "seq", "gateway", "effective_yaml", "unchanged", "summary")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_YAML_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    version: int
    yaml: str
    bundle: _common_pb2.PolicyBundle
    updated_at_ms: int
    seq: int
    gateway: str
    effective_yaml: str
    unchanged: bool
    summary: str
    def __init__(self, tenant: _Optional[str] = ..., version: _Optional[int] = ..., yaml: _Optional[str] = ..., bundle: _Optional[_Union[_common_pb2.PolicyBundle, _Mapping]] = ..., updated_at_ms: _Optional[int] = ..., seq: _Optional[int] = ..., gateway: _Optional[str] = ..., effective_yaml: _Optional[str] = ..., unchanged: _Optional[bool] = ..., summary: _Optional[str] = ...) -> None: ...

class PolicyTarget(_message.Message):
    __slots__ = ("tenant", "gateway")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    gateway: str
    def __init__(self, tenant: _Optional[str] = ..., gateway: _Optional[str] = ...) -> None: ...

class PolicyVersionInfo(_message.Message):
    __slots__ = ("version", "created_at_ms", "created_by", "summary", "rules", "default_action", "removed", "current")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ACTION_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    version: int
    created_at_ms: int
    created_by: str
    summary: str
    rules: int
    default_action: str
    removed: bool
    current: bool
    def __init__(self, version: _Optional[int] = ..., created_at_ms: _Optional[int] = ..., created_by: _Optional[str] = ..., summary: _Optional[str] = ..., rules: _Optional[int] = ..., default_action: _Optional[str] = ..., removed: _Optional[bool] = ..., current: _Optional[bool] = ...) -> None: ...

class PolicyHistoryResponse(_message.Message):
    __slots__ = ("tenant", "gateway", "versions")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    gateway: str
    versions: _containers.RepeatedCompositeFieldContainer[PolicyVersionInfo]
    def __init__(self, tenant: _Optional[str] = ..., gateway: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[PolicyVersionInfo, _Mapping]]] = ...) -> None: ...

class DiffPolicyRequest(_message.Message):
    __slots__ = ("target", "from_version", "to_version")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    target: PolicyTarget
    from_version: int
    to_version: int
    def __init__(self, target: _Optional[_Union[PolicyTarget, _Mapping]] = ..., from_version: _Optional[int] = ..., to_version: _Optional[int] = ...) -> None: ...

class PolicyDiff(_message.Message):
    __slots__ = ("tenant", "gateway", "from_version", "to_version", "unified_diff", "rules_added", "rules_removed", "rules_changed", "rules_reordered", "default_before", "default_after")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    UNIFIED_DIFF_FIELD_NUMBER: _ClassVar[int]
    RULES_ADDED_FIELD_NUMBER: _ClassVar[int]
    RULES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    RULES_CHANGED_FIELD_NUMBER: _ClassVar[int]
    RULES_REORDERED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_AFTER_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    gateway: str
    from_version: int
    to_version: int
    unified_diff: str
    rules_added: _containers.RepeatedScalarFieldContainer[str]
    rules_removed: _containers.RepeatedScalarFieldContainer[str]
    rules_changed: _containers.RepeatedScalarFieldContainer[str]
    rules_reordered: bool
    default_before: str
    default_after: str
    def __init__(self, tenant: _Optional[str] = ..., gateway: _Optional[str] = ..., from_version: _Optional[int] = ..., to_version: _Optional[int] = ..., unified_diff: _Optional[str] = ..., rules_added: _Optional[_Iterable[str]] = ..., rules_removed: _Optional[_Iterable[str]] = ..., rules_changed: _Optional[_Iterable[str]] = ..., rules_reordered: _Optional[bool] = ..., default_before: _Optional[str] = ..., default_after: _Optional[str] = ...) -> None: ...

class PolicyImpact(_message.Message):
    __slots__ = ("gateway", "has_override", "shadows")
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    HAS_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    SHADOWS_FIELD_NUMBER: _ClassVar[int]
    gateway: str
    has_override: bool
    shadows: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, gateway: _Optional[str] = ..., has_override: _Optional[bool] = ..., shadows: _Optional[_Iterable[str]] = ...) -> None: ...

class PolicyPreview(_message.Message):
    __slots__ = ("diff", "gateways", "unchanged")
    DIFF_FIELD_NUMBER: _ClassVar[int]
    GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    diff: PolicyDiff
    gateways: _containers.RepeatedCompositeFieldContainer[PolicyImpact]
    unchanged: bool
    def __init__(self, diff: _Optional[_Union[PolicyDiff, _Mapping]] = ..., gateways: _Optional[_Iterable[_Union[PolicyImpact, _Mapping]]] = ..., unchanged: _Optional[bool] = ...) -> None: ...

class RollbackPolicyRequest(_message.Message):
    __slots__ = ("target", "version")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    target: PolicyTarget
    version: int
    def __init__(self, target: _Optional[_Union[PolicyTarget, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class AddIocRequest(_message.Message):
    __slots__ = ("value", "scope", "ttl_seconds", "source", "confidence", "has_confidence", "has_ttl")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    HAS_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    HAS_TTL_FIELD_NUMBER: _ClassVar[int]
    value: str
    scope: str
    ttl_seconds: int
    source: str
    confidence: int
    has_confidence: bool
    has_ttl: bool
    def __init__(self, value: _Optional[str] = ..., scope: _Optional[str] = ..., ttl_seconds: _Optional[int] = ..., source: _Optional[str] = ..., confidence: _Optional[int] = ..., has_confidence: _Optional[bool] = ..., has_ttl: _Optional[bool] = ...) -> None: ...

class IocInfo(_message.Message):
    __slots__ = ("ioc", "scope", "created_at_ms", "seq", "refreshed", "sources")
    IOC_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REFRESHED_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    ioc: _common_pb2.Ioc
    scope: str
    created_at_ms: int
    seq: int
    refreshed: bool
    sources: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ioc: _Optional[_Union[_common_pb2.Ioc, _Mapping]] = ..., scope: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., seq: _Optional[int] = ..., refreshed: _Optional[bool] = ..., sources: _Optional[_Iterable[str]] = ...) -> None: ...

class RemoveIocRequest(_message.Message):
    __slots__ = ("value", "scope")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    value: str
    scope: str
    def __init__(self, value: _Optional[str] = ..., scope: _Optional[str] = ...) -> None: ...

class RemoveIocResponse(_message.Message):
    __slots__ = ("removed", "seq", "held_in")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HELD_IN_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    seq: int
    held_in: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, removed: _Optional[bool] = ..., seq: _Optional[int] = ..., held_in: _Optional[_Iterable[str]] = ...) -> None: ...

class ListIocsRequest(_message.Message):
    __slots__ = ("scope",)
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    scope: str
    def __init__(self, scope: _Optional[str] = ...) -> None: ...

class ListIocsResponse(_message.Message):
    __slots__ = ("iocs",)
    IOCS_FIELD_NUMBER: _ClassVar[int]
    iocs: _containers.RepeatedCompositeFieldContainer[IocInfo]
    def __init__(self, iocs: _Optional[_Iterable[_Union[IocInfo, _Mapping]]] = ...) -> None: ...

class FleetStatusRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class FleetStatusResponse(_message.Message):
    __slots__ = ("gateways", "total", "online", "converged", "push_errors")
    GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    PUSH_ERRORS_FIELD_NUMBER: _ClassVar[int]
    gateways: _containers.RepeatedCompositeFieldContainer[Gateway]
    total: int
    online: int
    converged: int
    push_errors: _containers.RepeatedCompositeFieldContainer[PushError]
    def __init__(self, gateways: _Optional[_Iterable[_Union[Gateway, _Mapping]]] = ..., total: _Optional[int] = ..., online: _Optional[int] = ..., converged: _Optional[int] = ..., push_errors: _Optional[_Iterable[_Union[PushError, _Mapping]]] = ...) -> None: ...

class PushError(_message.Message):
    __slots__ = ("channel", "seq", "error", "created_at_ms")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    seq: int
    error: str
    created_at_ms: int
    def __init__(self, channel: _Optional[str] = ..., seq: _Optional[int] = ..., error: _Optional[str] = ..., created_at_ms: _Optional[int] = ...) -> None: ...
