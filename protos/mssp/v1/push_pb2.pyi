from mssp.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignedEnvelope(_message.Message):
    __slots__ = ("payload", "signature", "key_id")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    signature: bytes
    key_id: str
    def __init__(self, payload: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., key_id: _Optional[str] = ...) -> None: ...

class Push(_message.Message):
    __slots__ = ("channel", "seq", "issued_at_ms", "expires_at_ms", "policy", "iocs", "snapshot", "beacon", "part", "signing_keys")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    IOCS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    BEACON_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEYS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    seq: int
    issued_at_ms: int
    expires_at_ms: int
    policy: _common_pb2.PolicyBundle
    iocs: IocDelta
    snapshot: SnapshotPart
    beacon: Beacon
    part: PushPart
    signing_keys: _common_pb2.SigningKeys
    def __init__(self, channel: _Optional[str] = ..., seq: _Optional[int] = ..., issued_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., policy: _Optional[_Union[_common_pb2.PolicyBundle, _Mapping]] = ..., iocs: _Optional[_Union[IocDelta, _Mapping]] = ..., snapshot: _Optional[_Union[SnapshotPart, _Mapping]] = ..., beacon: _Optional[_Union[Beacon, _Mapping]] = ..., part: _Optional[_Union[PushPart, _Mapping]] = ..., signing_keys: _Optional[_Union[_common_pb2.SigningKeys, _Mapping]] = ...) -> None: ...

class PushPart(_message.Message):
    __slots__ = ("index", "count", "digest", "data")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    index: int
    count: int
    digest: bytes
    data: bytes
    def __init__(self, index: _Optional[int] = ..., count: _Optional[int] = ..., digest: _Optional[bytes] = ..., data: _Optional[bytes] = ...) -> None: ...

class IocDelta(_message.Message):
    __slots__ = ("upsert", "remove")
    UPSERT_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    upsert: _containers.RepeatedCompositeFieldContainer[_common_pb2.Ioc]
    remove: _containers.RepeatedCompositeFieldContainer[_common_pb2.Ioc]
    def __init__(self, upsert: _Optional[_Iterable[_Union[_common_pb2.Ioc, _Mapping]]] = ..., remove: _Optional[_Iterable[_Union[_common_pb2.Ioc, _Mapping]]] = ...) -> None: ...

class SnapshotPart(_message.Message):
    __slots__ = ("index", "last", "policy", "iocs")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    IOCS_FIELD_NUMBER: _ClassVar[int]
    index: int
    last: bool
    policy: _common_pb2.PolicyBundle
    iocs: _containers.RepeatedCompositeFieldContainer[_common_pb2.Ioc]
    def __init__(self, index: _Optional[int] = ..., last: _Optional[bool] = ..., policy: _Optional[_Union[_common_pb2.PolicyBundle, _Mapping]] = ..., iocs: _Optional[_Iterable[_Union[_common_pb2.Ioc, _Mapping]]] = ...) -> None: ...

class Beacon(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
