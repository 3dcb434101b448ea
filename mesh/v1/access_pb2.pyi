from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

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
