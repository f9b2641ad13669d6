from mssp.v1 import common_pb2 as _common_pb2
from mssp.v1 import operator_pb2 as _operator_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImportOptions(_message.Message):
    __slots__ = ("format", "scope", "source", "has_confidence", "confidence", "has_ttl", "ttl_seconds", "tlp", "column", "skip_invalid", "dry_run", "filename")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    HAS_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    HAS_TTL_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TLP_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    SKIP_INVALID_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    format: str
    scope: str
    source: str
    has_confidence: bool
    confidence: int
    has_ttl: bool
    ttl_seconds: int
    tlp: str
    column: str
    skip_invalid: bool
    dry_run: bool
    filename: str
    def __init__(self, format: _Optional[str] = ..., scope: _Optional[str] = ..., source: _Optional[str] = ..., has_confidence: _Optional[bool] = ..., confidence: _Optional[int] = ..., has_ttl: _Optional[bool] = ..., ttl_seconds: _Optional[int] = ..., tlp: _Optional[str] = ..., column: _Optional[str] = ..., skip_invalid: _Optional[bool] = ..., dry_run: _Optional[bool] = ..., filename: _Optional[str] = ...) -> None: ...

class ImportChunk(_message.Message):
    __slots__ = ("options", "data")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    options: ImportOptions
    data: bytes
    def __init__(self, options: _Optional[_Union[ImportOptions, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImportProblem(_message.Message):
    __slots__ = ("where", "reason", "kind")
    WHERE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    where: str
    reason: str
    kind: str
    def __init__(self, where: _Optional[str] = ..., reason: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class ImportResult(_message.Message):
    __slots__ = ("scope", "source", "dry_run", "entries", "new", "refreshed", "unchanged", "removed", "invalid", "unsupported", "refused", "urls", "seqs", "problems")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEW_FIELD_NUMBER: _ClassVar[int]
    REFRESHED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    INVALID_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    URLS_FIELD_NUMBER: _ClassVar[int]
    SEQS_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    scope: str
    source: str
    dry_run: bool
    entries: int
    new: int
    refreshed: int
    unchanged: int
    removed: int
    invalid: int
    unsupported: int
    refused: int
    urls: int
    seqs: _containers.RepeatedScalarFieldContainer[int]
    problems: _containers.RepeatedCompositeFieldContainer[ImportProblem]
    def __init__(self, scope: _Optional[str] = ..., source: _Optional[str] = ..., dry_run: _Optional[bool] = ..., entries: _Optional[int] = ..., new: _Optional[int] = ..., refreshed: _Optional[int] = ..., unchanged: _Optional[int] = ..., removed: _Optional[int] = ..., invalid: _Optional[int] = ..., unsupported: _Optional[int] = ..., refused: _Optional[int] = ..., urls: _Optional[int] = ..., seqs: _Optional[_Iterable[int]] = ..., problems: _Optional[_Iterable[_Union[ImportProblem, _Mapping]]] = ...) -> None: ...

class ShowIocRequest(_message.Message):
    __slots__ = ("value", "scope")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    value: str
    scope: str
    def __init__(self, value: _Optional[str] = ..., scope: _Optional[str] = ...) -> None: ...

class IocClaim(_message.Message):
    __slots__ = ("source", "confidence", "expires_at_ms", "tlp", "last_seen_ms", "decays", "score")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    TLP_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    DECAYS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    source: str
    confidence: int
    expires_at_ms: int
    tlp: str
    last_seen_ms: int
    decays: bool
    score: float
    def __init__(self, source: _Optional[str] = ..., confidence: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., tlp: _Optional[str] = ..., last_seen_ms: _Optional[int] = ..., decays: _Optional[bool] = ..., score: _Optional[float] = ...) -> None: ...

class IocDetail(_message.Message):
    __slots__ = ("info", "claims")
    INFO_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    info: _operator_pb2.IocInfo
    claims: _containers.RepeatedCompositeFieldContainer[IocClaim]
    def __init__(self, info: _Optional[_Union[_operator_pb2.IocInfo, _Mapping]] = ..., claims: _Optional[_Iterable[_Union[IocClaim, _Mapping]]] = ...) -> None: ...

class ListUrlsRequest(_message.Message):
    __slots__ = ("scope", "limit")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    scope: str
    limit: int
    def __init__(self, scope: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class UrlIndicator(_message.Message):
    __slots__ = ("url", "host", "host_blocked", "source", "scope", "first_seen_ms", "last_seen_ms")
    URL_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    HOST_BLOCKED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    url: str
    host: str
    host_blocked: bool
    source: str
    scope: str
    first_seen_ms: int
    last_seen_ms: int
    def __init__(self, url: _Optional[str] = ..., host: _Optional[str] = ..., host_blocked: _Optional[bool] = ..., source: _Optional[str] = ..., scope: _Optional[str] = ..., first_seen_ms: _Optional[int] = ..., last_seen_ms: _Optional[int] = ...) -> None: ...

class ListUrlsResponse(_message.Message):
    __slots__ = ("urls",)
    URLS_FIELD_NUMBER: _ClassVar[int]
    urls: _containers.RepeatedCompositeFieldContainer[UrlIndicator]
    def __init__(self, urls: _Optional[_Iterable[_Union[UrlIndicator, _Mapping]]] = ...) -> None: ...

class ExportIocsRequest(_message.Message):
    __slots__ = ("scope", "format", "tlp")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TLP_FIELD_NUMBER: _ClassVar[int]
    scope: str
    format: str
    tlp: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, scope: _Optional[str] = ..., format: _Optional[str] = ..., tlp: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportChunk(_message.Message):
    __slots__ = ("data", "count")
    DATA_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    count: int
    def __init__(self, data: _Optional[bytes] = ..., count: _Optional[int] = ...) -> None: ...

class AllowRequest(_message.Message):
    __slots__ = ("value", "scope", "note")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    value: str
    scope: str
    note: str
    def __init__(self, value: _Optional[str] = ..., scope: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class AllowEntry(_message.Message):
    __slots__ = ("value", "scope", "note", "created_at_ms", "matching")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    MATCHING_FIELD_NUMBER: _ClassVar[int]
    value: str
    scope: str
    note: str
    created_at_ms: int
    matching: int
    def __init__(self, value: _Optional[str] = ..., scope: _Optional[str] = ..., note: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., matching: _Optional[int] = ...) -> None: ...

class RemoveAllowResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class ListAllowRequest(_message.Message):
    __slots__ = ("scope",)
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    scope: str
    def __init__(self, scope: _Optional[str] = ...) -> None: ...

class ListAllowResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AllowEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AllowEntry, _Mapping]]] = ...) -> None: ...

class AddFeedRequest(_message.Message):
    __slots__ = ("name", "url", "path", "format", "column", "scope", "every_seconds", "has_confidence", "confidence", "tlp", "taxii", "collection", "token_env")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    EVERY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HAS_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TLP_FIELD_NUMBER: _ClassVar[int]
    TAXII_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ENV_FIELD_NUMBER: _ClassVar[int]
    name: str
    url: str
    path: str
    format: str
    column: str
    scope: str
    every_seconds: int
    has_confidence: bool
    confidence: int
    tlp: str
    taxii: str
    collection: str
    token_env: str
    def __init__(self, name: _Optional[str] = ..., url: _Optional[str] = ..., path: _Optional[str] = ..., format: _Optional[str] = ..., column: _Optional[str] = ..., scope: _Optional[str] = ..., every_seconds: _Optional[int] = ..., has_confidence: _Optional[bool] = ..., confidence: _Optional[int] = ..., tlp: _Optional[str] = ..., taxii: _Optional[str] = ..., collection: _Optional[str] = ..., token_env: _Optional[str] = ...) -> None: ...

class FeedInfo(_message.Message):
    __slots__ = ("name", "location", "kind", "format", "scope", "every_seconds", "last_run_ms", "last_success_ms", "last_error", "entries", "next_run_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    EVERY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SUCCESS_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    location: str
    kind: str
    format: str
    scope: str
    every_seconds: int
    last_run_ms: int
    last_success_ms: int
    last_error: str
    entries: int
    next_run_ms: int
    def __init__(self, name: _Optional[str] = ..., location: _Optional[str] = ..., kind: _Optional[str] = ..., format: _Optional[str] = ..., scope: _Optional[str] = ..., every_seconds: _Optional[int] = ..., last_run_ms: _Optional[int] = ..., last_success_ms: _Optional[int] = ..., last_error: _Optional[str] = ..., entries: _Optional[int] = ..., next_run_ms: _Optional[int] = ...) -> None: ...

class ListFeedsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFeedsResponse(_message.Message):
    __slots__ = ("feeds",)
    FEEDS_FIELD_NUMBER: _ClassVar[int]
    feeds: _containers.RepeatedCompositeFieldContainer[FeedInfo]
    def __init__(self, feeds: _Optional[_Iterable[_Union[FeedInfo, _Mapping]]] = ...) -> None: ...

class FeedRef(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class FeedRunResult(_message.Message):
    __slots__ = ("feed", "result", "not_modified")
    FEED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    NOT_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    feed: FeedInfo
    result: ImportResult
    not_modified: bool
    def __init__(self, feed: _Optional[_Union[FeedInfo, _Mapping]] = ..., result: _Optional[_Union[ImportResult, _Mapping]] = ..., not_modified: _Optional[bool] = ...) -> None: ...

class ListSightingsRequest(_message.Message):
    __slots__ = ("tenant", "since_ms", "state")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    since_ms: int
    state: str
    def __init__(self, tenant: _Optional[str] = ..., since_ms: _Optional[int] = ..., state: _Optional[str] = ...) -> None: ...

class SightingWhere(_message.Message):
    __slots__ = ("tenant", "gateway", "host", "via", "count", "first_seen_ms", "last_seen_ms")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    gateway: str
    host: str
    via: str
    count: int
    first_seen_ms: int
    last_seen_ms: int
    def __init__(self, tenant: _Optional[str] = ..., gateway: _Optional[str] = ..., host: _Optional[str] = ..., via: _Optional[str] = ..., count: _Optional[int] = ..., first_seen_ms: _Optional[int] = ..., last_seen_ms: _Optional[int] = ...) -> None: ...

class SightingInfo(_message.Message):
    __slots__ = ("id", "type", "value", "state", "tenants", "sharing_tenants", "gateways", "hosts", "count", "first_seen_ms", "last_seen_ms", "confidence", "scope", "decided_by", "decided_at_ms", "reason", "seen_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    SHARING_TENANTS_FIELD_NUMBER: _ClassVar[int]
    GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: _common_pb2.IocType
    value: str
    state: str
    tenants: int
    sharing_tenants: int
    gateways: int
    hosts: int
    count: int
    first_seen_ms: int
    last_seen_ms: int
    confidence: int
    scope: str
    decided_by: str
    decided_at_ms: int
    reason: str
    seen_at: _containers.RepeatedCompositeFieldContainer[SightingWhere]
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[_common_pb2.IocType, str]] = ..., value: _Optional[str] = ..., state: _Optional[str] = ..., tenants: _Optional[int] = ..., sharing_tenants: _Optional[int] = ..., gateways: _Optional[int] = ..., hosts: _Optional[int] = ..., count: _Optional[int] = ..., first_seen_ms: _Optional[int] = ..., last_seen_ms: _Optional[int] = ..., confidence: _Optional[int] = ..., scope: _Optional[str] = ..., decided_by: _Optional[str] = ..., decided_at_ms: _Optional[int] = ..., reason: _Optional[str] = ..., seen_at: _Optional[_Iterable[_Union[SightingWhere, _Mapping]]] = ...) -> None: ...

class ListSightingsResponse(_message.Message):
    __slots__ = ("sightings",)
    SIGHTINGS_FIELD_NUMBER: _ClassVar[int]
    sightings: _containers.RepeatedCompositeFieldContainer[SightingInfo]
    def __init__(self, sightings: _Optional[_Iterable[_Union[SightingInfo, _Mapping]]] = ...) -> None: ...

class PromoteSightingRequest(_message.Message):
    __slots__ = ("id", "scope", "ttl_seconds", "has_ttl")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HAS_TTL_FIELD_NUMBER: _ClassVar[int]
    id: str
    scope: str
    ttl_seconds: int
    has_ttl: bool
    def __init__(self, id: _Optional[str] = ..., scope: _Optional[str] = ..., ttl_seconds: _Optional[int] = ..., has_ttl: _Optional[bool] = ...) -> None: ...

class SightingRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class FalsePositiveRequest(_message.Message):
    __slots__ = ("tenant", "value")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    value: str
    def __init__(self, tenant: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class FalsePositiveResult(_message.Message):
    __slots__ = ("value", "new", "withdrawn")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NEW_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_FIELD_NUMBER: _ClassVar[int]
    value: str
    new: bool
    withdrawn: bool
    def __init__(self, value: _Optional[str] = ..., new: _Optional[bool] = ..., withdrawn: _Optional[bool] = ...) -> None: ...
