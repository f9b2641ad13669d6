from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IocType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IOC_TYPE_UNSPECIFIED: _ClassVar[IocType]
    IOC_TYPE_IPV4: _ClassVar[IocType]
    IOC_TYPE_IPV6: _ClassVar[IocType]
    IOC_TYPE_CIDR4: _ClassVar[IocType]
    IOC_TYPE_CIDR6: _ClassVar[IocType]
    IOC_TYPE_DOMAIN: _ClassVar[IocType]

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_ALLOW: _ClassVar[Action]
    ACTION_DENY: _ClassVar[Action]
    ACTION_ALERT: _ClassVar[Action]
IOC_TYPE_UNSPECIFIED: IocType
IOC_TYPE_IPV4: IocType
IOC_TYPE_IPV6: IocType
IOC_TYPE_CIDR4: IocType
IOC_TYPE_CIDR6: IocType
IOC_TYPE_DOMAIN: IocType
ACTION_UNSPECIFIED: Action
ACTION_ALLOW: Action
ACTION_DENY: Action
ACTION_ALERT: Action

class Versions(_message.Message):
    __slots__ = ("global_seq", "tenant_seq", "alliance_seq")
    GLOBAL_SEQ_FIELD_NUMBER: _ClassVar[int]
    TENANT_SEQ_FIELD_NUMBER: _ClassVar[int]
    ALLIANCE_SEQ_FIELD_NUMBER: _ClassVar[int]
    global_seq: int
    tenant_seq: int
    alliance_seq: int
    def __init__(self, global_seq: _Optional[int] = ..., tenant_seq: _Optional[int] = ..., alliance_seq: _Optional[int] = ...) -> None: ...

class Ioc(_message.Message):
    __slots__ = ("type", "value", "expires_at_ms", "confidence", "source")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    type: IocType
    value: str
    expires_at_ms: int
    confidence: int
    source: str
    def __init__(self, type: _Optional[_Union[IocType, str]] = ..., value: _Optional[str] = ..., expires_at_ms: _Optional[int] = ..., confidence: _Optional[int] = ..., source: _Optional[str] = ...) -> None: ...

class PortRange(_message.Message):
    __slots__ = ("first", "last")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    first: int
    last: int
    def __init__(self, first: _Optional[int] = ..., last: _Optional[int] = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("name", "action", "cidrs", "protocol", "ports", "domains", "categories")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CIDRS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    action: Action
    cidrs: _containers.RepeatedScalarFieldContainer[str]
    protocol: str
    ports: _containers.RepeatedCompositeFieldContainer[PortRange]
    domains: _containers.RepeatedScalarFieldContainer[str]
    categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ..., cidrs: _Optional[_Iterable[str]] = ..., protocol: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[PortRange, _Mapping]]] = ..., domains: _Optional[_Iterable[str]] = ..., categories: _Optional[_Iterable[str]] = ...) -> None: ...

class UploadThreshold(_message.Message):
    __slots__ = ("category", "bytes_per_day")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    BYTES_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    category: str
    bytes_per_day: int
    def __init__(self, category: _Optional[str] = ..., bytes_per_day: _Optional[int] = ...) -> None: ...

class PolicyBundle(_message.Message):
    __slots__ = ("version", "default_action", "rules", "upload_thresholds", "categories", "exempt", "gateways")
    class CategoriesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: DomainList
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[DomainList, _Mapping]] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ACTION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    EXEMPT_FIELD_NUMBER: _ClassVar[int]
    GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    version: int
    default_action: Action
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    upload_thresholds: _containers.RepeatedCompositeFieldContainer[UploadThreshold]
    categories: _containers.MessageMap[str, DomainList]
    exempt: _containers.RepeatedScalarFieldContainer[str]
    gateways: _containers.RepeatedCompositeFieldContainer[GatewayBundle]
    def __init__(self, version: _Optional[int] = ..., default_action: _Optional[_Union[Action, str]] = ..., rules: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ..., upload_thresholds: _Optional[_Iterable[_Union[UploadThreshold, _Mapping]]] = ..., categories: _Optional[_Mapping[str, DomainList]] = ..., exempt: _Optional[_Iterable[str]] = ..., gateways: _Optional[_Iterable[_Union[GatewayBundle, _Mapping]]] = ...) -> None: ...

class GatewayBundle(_message.Message):
    __slots__ = ("gateway_id", "bundle")
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    gateway_id: str
    bundle: PolicyBundle
    def __init__(self, gateway_id: _Optional[str] = ..., bundle: _Optional[_Union[PolicyBundle, _Mapping]] = ...) -> None: ...

class DomainList(_message.Message):
    __slots__ = ("domains",)
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    domains: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, domains: _Optional[_Iterable[str]] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("kind", "value", "reason")
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    value: str
    reason: str
    def __init__(self, kind: _Optional[str] = ..., value: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TrustedKey(_message.Message):
    __slots__ = ("public_key", "retires_at_ms")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    RETIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    retires_at_ms: int
    def __init__(self, public_key: _Optional[bytes] = ..., retires_at_ms: _Optional[int] = ...) -> None: ...

class SigningKeys(_message.Message):
    __slots__ = ("keys", "issued_at_ms")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[TrustedKey]
    issued_at_ms: int
    def __init__(self, keys: _Optional[_Iterable[_Union[TrustedKey, _Mapping]]] = ..., issued_at_ms: _Optional[int] = ...) -> None: ...
