from mssp.v1 import common_pb2 as _common_pb2
from mssp.v1 import push_pb2 as _push_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RenewRequest(_message.Message):
    __slots__ = ("csr_pem", "nats_public_key")
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    NATS_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    nats_public_key: str
    def __init__(self, csr_pem: _Optional[bytes] = ..., nats_public_key: _Optional[str] = ...) -> None: ...

class RenewResponse(_message.Message):
    __slots__ = ("client_cert_pem", "nats_user_jwt", "not_after_ms")
    CLIENT_CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    NATS_USER_JWT_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    client_cert_pem: bytes
    nats_user_jwt: str
    not_after_ms: int
    def __init__(self, client_cert_pem: _Optional[bytes] = ..., nats_user_jwt: _Optional[str] = ..., not_after_ms: _Optional[int] = ...) -> None: ...

class SyncRequest(_message.Message):
    __slots__ = ("applied", "force_snapshot", "alliance")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    FORCE_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    ALLIANCE_FIELD_NUMBER: _ClassVar[int]
    applied: _common_pb2.Versions
    force_snapshot: bool
    alliance: bool
    def __init__(self, applied: _Optional[_Union[_common_pb2.Versions, _Mapping]] = ..., force_snapshot: _Optional[bool] = ..., alliance: _Optional[bool] = ...) -> None: ...

class StatusReport(_message.Message):
    __slots__ = ("applied", "agent_version", "backend", "last_error", "apply_errors", "refusals", "refusals_total", "ioc_budget", "left_out_by_budget", "alliance_aware", "alliance", "rotation_aware", "clock_offset_ms", "ca_rollover_aware")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    APPLY_ERRORS_FIELD_NUMBER: _ClassVar[int]
    REFUSALS_FIELD_NUMBER: _ClassVar[int]
    REFUSALS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    IOC_BUDGET_FIELD_NUMBER: _ClassVar[int]
    LEFT_OUT_BY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    ALLIANCE_AWARE_FIELD_NUMBER: _ClassVar[int]
    ALLIANCE_FIELD_NUMBER: _ClassVar[int]
    ROTATION_AWARE_FIELD_NUMBER: _ClassVar[int]
    CLOCK_OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    CA_ROLLOVER_AWARE_FIELD_NUMBER: _ClassVar[int]
    applied: _common_pb2.Versions
    agent_version: str
    backend: str
    last_error: str
    apply_errors: int
    refusals: _containers.RepeatedCompositeFieldContainer[_common_pb2.Refusal]
    refusals_total: int
    ioc_budget: int
    left_out_by_budget: int
    alliance_aware: bool
    alliance: bool
    rotation_aware: bool
    clock_offset_ms: int
    ca_rollover_aware: bool
    def __init__(self, applied: _Optional[_Union[_common_pb2.Versions, _Mapping]] = ..., agent_version: _Optional[str] = ..., backend: _Optional[str] = ..., last_error: _Optional[str] = ..., apply_errors: _Optional[int] = ..., refusals: _Optional[_Iterable[_Union[_common_pb2.Refusal, _Mapping]]] = ..., refusals_total: _Optional[int] = ..., ioc_budget: _Optional[int] = ..., left_out_by_budget: _Optional[int] = ..., alliance_aware: _Optional[bool] = ..., alliance: _Optional[bool] = ..., rotation_aware: _Optional[bool] = ..., clock_offset_ms: _Optional[int] = ..., ca_rollover_aware: _Optional[bool] = ...) -> None: ...

class StatusAck(_message.Message):
    __slots__ = ("desired", "controller_time_ms")
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    desired: _common_pb2.Versions
    controller_time_ms: int
    def __init__(self, desired: _Optional[_Union[_common_pb2.Versions, _Mapping]] = ..., controller_time_ms: _Optional[int] = ...) -> None: ...

class GetBrokersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Brokers(_message.Message):
    __slots__ = ("nats_urls", "user_jwt", "channels", "signing_keys", "ca")
    NATS_URLS_FIELD_NUMBER: _ClassVar[int]
    USER_JWT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEYS_FIELD_NUMBER: _ClassVar[int]
    CA_FIELD_NUMBER: _ClassVar[int]
    nats_urls: _containers.RepeatedScalarFieldContainer[str]
    user_jwt: str
    channels: _containers.RepeatedScalarFieldContainer[str]
    signing_keys: _common_pb2.SigningKeys
    ca: CaTrust
    def __init__(self, nats_urls: _Optional[_Iterable[str]] = ..., user_jwt: _Optional[str] = ..., channels: _Optional[_Iterable[str]] = ..., signing_keys: _Optional[_Union[_common_pb2.SigningKeys, _Mapping]] = ..., ca: _Optional[_Union[CaTrust, _Mapping]] = ...) -> None: ...

class CaTrust(_message.Message):
    __slots__ = ("bundle_pem", "issuing_fingerprint")
    BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    ISSUING_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    bundle_pem: bytes
    issuing_fingerprint: str
    def __init__(self, bundle_pem: _Optional[bytes] = ..., issuing_fingerprint: _Optional[str] = ...) -> None: ...

class Sighting(_message.Message):
    __slots__ = ("indicator", "host", "via", "count", "first_seen_ms", "last_seen_ms", "score", "port", "median_interval_s", "jitter_s", "median_bytes")
    INDICATOR_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    JITTER_S_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_BYTES_FIELD_NUMBER: _ClassVar[int]
    indicator: str
    host: str
    via: str
    count: int
    first_seen_ms: int
    last_seen_ms: int
    score: int
    port: int
    median_interval_s: float
    jitter_s: float
    median_bytes: int
    def __init__(self, indicator: _Optional[str] = ..., host: _Optional[str] = ..., via: _Optional[str] = ..., count: _Optional[int] = ..., first_seen_ms: _Optional[int] = ..., last_seen_ms: _Optional[int] = ..., score: _Optional[int] = ..., port: _Optional[int] = ..., median_interval_s: _Optional[float] = ..., jitter_s: _Optional[float] = ..., median_bytes: _Optional[int] = ...) -> None: ...

class SightingReport(_message.Message):
    __slots__ = ("sightings",)
    SIGHTINGS_FIELD_NUMBER: _ClassVar[int]
    sightings: _containers.RepeatedCompositeFieldContainer[Sighting]
    def __init__(self, sightings: _Optional[_Iterable[_Union[Sighting, _Mapping]]] = ...) -> None: ...

class SightingAck(_message.Message):
    __slots__ = ("accepted", "refused")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    refused: int
    def __init__(self, accepted: _Optional[int] = ..., refused: _Optional[int] = ...) -> None: ...
