import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnrollTotpRequest(_message.Message):
    __slots__ = ("current_code",)
    CURRENT_CODE_FIELD_NUMBER: _ClassVar[int]
    current_code: str
    def __init__(self, current_code: _Optional[str] = ...) -> None: ...

class EnrollTotpResponse(_message.Message):
    __slots__ = ("secret", "provisioning_uri", "operator")
    SECRET_FIELD_NUMBER: _ClassVar[int]
    PROVISIONING_URI_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    secret: str
    provisioning_uri: str
    operator: str
    def __init__(self, secret: _Optional[str] = ..., provisioning_uri: _Optional[str] = ..., operator: _Optional[str] = ...) -> None: ...

class ConfirmTotpRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class ConfirmTotpResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StepUpRequest(_message.Message):
    __slots__ = ("action", "resource", "code")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    action: str
    resource: str
    code: str
    def __init__(self, action: _Optional[str] = ..., resource: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class StepUpResponse(_message.Message):
    __slots__ = ("token", "expires_at", "amr")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    AMR_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at: _timestamp_pb2.Timestamp
    amr: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, token: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., amr: _Optional[_Iterable[str]] = ...) -> None: ...

class CheckAccessRequest(_message.Message):
    __slots__ = ("action", "tenant")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    action: str
    tenant: str
    def __init__(self, action: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class CheckAccessResponse(_message.Message):
    __slots__ = ("allowed", "action", "tenant", "role", "reason", "credential_id", "credential_tenant", "roles")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_TENANT_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    action: str
    tenant: str
    role: str
    reason: str
    credential_id: str
    credential_tenant: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, allowed: _Optional[bool] = ..., action: _Optional[str] = ..., tenant: _Optional[str] = ..., role: _Optional[str] = ..., reason: _Optional[str] = ..., credential_id: _Optional[str] = ..., credential_tenant: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...
