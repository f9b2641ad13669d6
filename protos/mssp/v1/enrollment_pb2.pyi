from mssp.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnrollRequest(_message.Message):
    __slots__ = ("token", "csr_pem", "nats_public_key", "agent_version", "alliance_aware", "rotation_aware", "ca_rollover_aware")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    NATS_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALLIANCE_AWARE_FIELD_NUMBER: _ClassVar[int]
    ROTATION_AWARE_FIELD_NUMBER: _ClassVar[int]
    CA_ROLLOVER_AWARE_FIELD_NUMBER: _ClassVar[int]
    token: str
    csr_pem: bytes
    nats_public_key: str
    agent_version: str
    alliance_aware: bool
    rotation_aware: bool
    ca_rollover_aware: bool
    def __init__(self, token: _Optional[str] = ..., csr_pem: _Optional[bytes] = ..., nats_public_key: _Optional[str] = ..., agent_version: _Optional[str] = ..., alliance_aware: _Optional[bool] = ..., rotation_aware: _Optional[bool] = ..., ca_rollover_aware: _Optional[bool] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("tenant_id", "tenant_name", "gateway_id", "gateway_name", "client_cert_pem", "ca_cert_pem", "gateway_endpoint", "nats_urls", "nats_user_jwt", "signing_public_key", "desired")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_NAME_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    NATS_URLS_FIELD_NUMBER: _ClassVar[int]
    NATS_USER_JWT_FIELD_NUMBER: _ClassVar[int]
    SIGNING_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    tenant_name: str
    gateway_id: str
    gateway_name: str
    client_cert_pem: bytes
    ca_cert_pem: bytes
    gateway_endpoint: str
    nats_urls: _containers.RepeatedScalarFieldContainer[str]
    nats_user_jwt: str
    signing_public_key: bytes
    desired: _common_pb2.Versions
    def __init__(self, tenant_id: _Optional[str] = ..., tenant_name: _Optional[str] = ..., gateway_id: _Optional[str] = ..., gateway_name: _Optional[str] = ..., client_cert_pem: _Optional[bytes] = ..., ca_cert_pem: _Optional[bytes] = ..., gateway_endpoint: _Optional[str] = ..., nats_urls: _Optional[_Iterable[str]] = ..., nats_user_jwt: _Optional[str] = ..., signing_public_key: _Optional[bytes] = ..., desired: _Optional[_Union[_common_pb2.Versions, _Mapping]] = ...) -> None: ...
