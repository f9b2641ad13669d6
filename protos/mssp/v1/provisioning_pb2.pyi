from mssp.v1 import operator_pb2 as _operator_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SshHost(_message.Message):
    __slots__ = ("name", "host", "port", "user", "prefix")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    name: str
    host: str
    port: int
    user: str
    prefix: str
    def __init__(self, name: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., user: _Optional[str] = ..., prefix: _Optional[str] = ...) -> None: ...

class SshAccess(_message.Message):
    __slots__ = ("private_key", "become", "jump")
    PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    BECOME_FIELD_NUMBER: _ClassVar[int]
    JUMP_FIELD_NUMBER: _ClassVar[int]
    private_key: bytes
    become: bool
    jump: str
    def __init__(self, private_key: _Optional[bytes] = ..., become: _Optional[bool] = ..., jump: _Optional[str] = ...) -> None: ...

class RunOptions(_message.Message):
    __slots__ = ("bundle_dir", "router_options_json", "service_manager", "wait_seconds")
    BUNDLE_DIR_FIELD_NUMBER: _ClassVar[int]
    ROUTER_OPTIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    SERVICE_MANAGER_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    bundle_dir: str
    router_options_json: str
    service_manager: str
    wait_seconds: int
    def __init__(self, bundle_dir: _Optional[str] = ..., router_options_json: _Optional[str] = ..., service_manager: _Optional[str] = ..., wait_seconds: _Optional[int] = ...) -> None: ...

class ProvisionRequest(_message.Message):
    __slots__ = ("tenant", "hosts", "ssh", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    SSH_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    hosts: _containers.RepeatedCompositeFieldContainer[SshHost]
    ssh: SshAccess
    options: RunOptions
    def __init__(self, tenant: _Optional[str] = ..., hosts: _Optional[_Iterable[_Union[SshHost, _Mapping]]] = ..., ssh: _Optional[_Union[SshAccess, _Mapping]] = ..., options: _Optional[_Union[RunOptions, _Mapping]] = ...) -> None: ...

class UpgradeRequest(_message.Message):
    __slots__ = ("tenant", "gateways", "batch", "ssh", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    SSH_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    gateways: _containers.RepeatedScalarFieldContainer[str]
    batch: str
    ssh: SshAccess
    options: RunOptions
    def __init__(self, tenant: _Optional[str] = ..., gateways: _Optional[_Iterable[str]] = ..., batch: _Optional[str] = ..., ssh: _Optional[_Union[SshAccess, _Mapping]] = ..., options: _Optional[_Union[RunOptions, _Mapping]] = ...) -> None: ...

class DecommissionRequest(_message.Message):
    __slots__ = ("tenant", "name", "ssh", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SSH_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    name: str
    ssh: SshAccess
    options: RunOptions
    def __init__(self, tenant: _Optional[str] = ..., name: _Optional[str] = ..., ssh: _Optional[_Union[SshAccess, _Mapping]] = ..., options: _Optional[_Union[RunOptions, _Mapping]] = ...) -> None: ...

class HostProgress(_message.Message):
    __slots__ = ("gateway", "host", "state", "ok", "changed", "task", "message", "seconds", "phases")
    class PhasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    gateway: str
    host: str
    state: str
    ok: int
    changed: int
    task: str
    message: str
    seconds: float
    phases: _containers.ScalarMap[str, float]
    def __init__(self, gateway: _Optional[str] = ..., host: _Optional[str] = ..., state: _Optional[str] = ..., ok: _Optional[int] = ..., changed: _Optional[int] = ..., task: _Optional[str] = ..., message: _Optional[str] = ..., seconds: _Optional[float] = ..., phases: _Optional[_Mapping[str, float]] = ...) -> None: ...

class RunSummary(_message.Message):
    __slots__ = ("id", "kind", "tenant", "operator", "agent_version", "status", "started_at_ms", "finished_at_ms", "hosts")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    tenant: str
    operator: str
    agent_version: str
    status: str
    started_at_ms: int
    finished_at_ms: int
    hosts: _containers.RepeatedCompositeFieldContainer[HostProgress]
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., tenant: _Optional[str] = ..., operator: _Optional[str] = ..., agent_version: _Optional[str] = ..., status: _Optional[str] = ..., started_at_ms: _Optional[int] = ..., finished_at_ms: _Optional[int] = ..., hosts: _Optional[_Iterable[_Union[HostProgress, _Mapping]]] = ...) -> None: ...

class ProvisionEvent(_message.Message):
    __slots__ = ("host", "done")
    HOST_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    host: HostProgress
    done: RunSummary
    def __init__(self, host: _Optional[_Union[HostProgress, _Mapping]] = ..., done: _Optional[_Union[RunSummary, _Mapping]] = ...) -> None: ...

class ListProvisionRunsRequest(_message.Message):
    __slots__ = ("tenant", "limit")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    limit: int
    def __init__(self, tenant: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListProvisionRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunSummary]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunSummary, _Mapping]]] = ...) -> None: ...

class ForgetHostKeyResponse(_message.Message):
    __slots__ = ("fingerprint",)
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    def __init__(self, fingerprint: _Optional[str] = ...) -> None: ...
