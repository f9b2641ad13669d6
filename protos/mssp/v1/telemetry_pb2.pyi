from mssp.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TelemetryRecord(_message.Message):
    __slots__ = ("metric", "dimension", "packets", "bytes", "count")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    metric: str
    dimension: str
    packets: int
    bytes: int
    count: int
    def __init__(self, metric: _Optional[str] = ..., dimension: _Optional[str] = ..., packets: _Optional[int] = ..., bytes: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class AgentHealth(_message.Message):
    __slots__ = ("rss_bytes", "cpu_seconds", "apply_errors", "applied", "spool_drops", "spool_depth", "agent_version")
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    APPLY_ERRORS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    SPOOL_DROPS_FIELD_NUMBER: _ClassVar[int]
    SPOOL_DEPTH_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    rss_bytes: int
    cpu_seconds: float
    apply_errors: int
    applied: _common_pb2.Versions
    spool_drops: int
    spool_depth: int
    agent_version: str
    def __init__(self, rss_bytes: _Optional[int] = ..., cpu_seconds: _Optional[float] = ..., apply_errors: _Optional[int] = ..., applied: _Optional[_Union[_common_pb2.Versions, _Mapping]] = ..., spool_drops: _Optional[int] = ..., spool_depth: _Optional[int] = ..., agent_version: _Optional[str] = ...) -> None: ...

class TelemetryBatch(_message.Message):
    __slots__ = ("gateway_id", "tenant_id", "batch_seq", "period_start_ms", "period_end_ms", "health", "records")
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_MS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_MS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    gateway_id: str
    tenant_id: str
    batch_seq: int
    period_start_ms: int
    period_end_ms: int
    health: AgentHealth
    records: _containers.RepeatedCompositeFieldContainer[TelemetryRecord]
    def __init__(self, gateway_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., batch_seq: _Optional[int] = ..., period_start_ms: _Optional[int] = ..., period_end_ms: _Optional[int] = ..., health: _Optional[_Union[AgentHealth, _Mapping]] = ..., records: _Optional[_Iterable[_Union[TelemetryRecord, _Mapping]]] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("tenant", "since_seconds", "limit", "kind")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SINCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    since_seconds: int
    limit: int
    kind: str
    def __init__(self, tenant: _Optional[str] = ..., since_seconds: _Optional[int] = ..., limit: _Optional[int] = ..., kind: _Optional[str] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("id", "tenant_id", "tenant", "gateway_id", "gateway", "kind", "subject", "host", "at_ms", "details")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    tenant: str
    gateway_id: str
    gateway: str
    kind: str
    subject: str
    host: str
    at_ms: int
    details: str
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., tenant: _Optional[str] = ..., gateway_id: _Optional[str] = ..., gateway: _Optional[str] = ..., kind: _Optional[str] = ..., subject: _Optional[str] = ..., host: _Optional[str] = ..., at_ms: _Optional[int] = ..., details: _Optional[str] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...

class TopRequest(_message.Message):
    __slots__ = ("tenant", "by", "since_seconds", "limit")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    SINCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    by: str
    since_seconds: int
    limit: int
    def __init__(self, tenant: _Optional[str] = ..., by: _Optional[str] = ..., since_seconds: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class TopEntry(_message.Message):
    __slots__ = ("key", "gateway_id", "gateway", "packets", "bytes", "count", "blocked", "hosts")
    KEY_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    key: str
    gateway_id: str
    gateway: str
    packets: int
    bytes: int
    count: int
    blocked: int
    hosts: int
    def __init__(self, key: _Optional[str] = ..., gateway_id: _Optional[str] = ..., gateway: _Optional[str] = ..., packets: _Optional[int] = ..., bytes: _Optional[int] = ..., count: _Optional[int] = ..., blocked: _Optional[int] = ..., hosts: _Optional[int] = ...) -> None: ...

class TopResponse(_message.Message):
    __slots__ = ("tenant", "by", "since_ms", "entries")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    by: str
    since_ms: int
    entries: _containers.RepeatedCompositeFieldContainer[TopEntry]
    def __init__(self, tenant: _Optional[str] = ..., by: _Optional[str] = ..., since_ms: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[TopEntry, _Mapping]]] = ...) -> None: ...

class UsageRequest(_message.Message):
    __slots__ = ("tenant", "period")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    period: str
    def __init__(self, tenant: _Optional[str] = ..., period: _Optional[str] = ...) -> None: ...

class GatewayUsage(_message.Message):
    __slots__ = ("gateway_id", "gateway", "days_online", "egress_bytes", "batches", "online_seconds")
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    DAYS_ONLINE_FIELD_NUMBER: _ClassVar[int]
    EGRESS_BYTES_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    ONLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    gateway_id: str
    gateway: str
    days_online: int
    egress_bytes: int
    batches: int
    online_seconds: int
    def __init__(self, gateway_id: _Optional[str] = ..., gateway: _Optional[str] = ..., days_online: _Optional[int] = ..., egress_bytes: _Optional[int] = ..., batches: _Optional[int] = ..., online_seconds: _Optional[int] = ...) -> None: ...

class UsageResponse(_message.Message):
    __slots__ = ("tenant", "tenant_id", "period", "gateway_days", "egress_bytes", "gateways")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_DAYS_FIELD_NUMBER: _ClassVar[int]
    EGRESS_BYTES_FIELD_NUMBER: _ClassVar[int]
    GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    tenant_id: str
    period: str
    gateway_days: int
    egress_bytes: int
    gateways: _containers.RepeatedCompositeFieldContainer[GatewayUsage]
    def __init__(self, tenant: _Optional[str] = ..., tenant_id: _Optional[str] = ..., period: _Optional[str] = ..., gateway_days: _Optional[int] = ..., egress_bytes: _Optional[int] = ..., gateways: _Optional[_Iterable[_Union[GatewayUsage, _Mapping]]] = ...) -> None: ...
