import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CompatibilityMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPATIBILITY_MODE_UNSPECIFIED: _ClassVar[CompatibilityMode]
    COMPATIBILITY_MODE_BACKWARD: _ClassVar[CompatibilityMode]
    COMPATIBILITY_MODE_BACKWARD_TRANSITIVE: _ClassVar[CompatibilityMode]
    COMPATIBILITY_MODE_FORWARD: _ClassVar[CompatibilityMode]
    COMPATIBILITY_MODE_FORWARD_TRANSITIVE: _ClassVar[CompatibilityMode]
    COMPATIBILITY_MODE_FULL: _ClassVar[CompatibilityMode]
    COMPATIBILITY_MODE_FULL_TRANSITIVE: _ClassVar[CompatibilityMode]
    COMPATIBILITY_MODE_NONE: _ClassVar[CompatibilityMode]
COMPATIBILITY_MODE_UNSPECIFIED: CompatibilityMode
COMPATIBILITY_MODE_BACKWARD: CompatibilityMode
COMPATIBILITY_MODE_BACKWARD_TRANSITIVE: CompatibilityMode
COMPATIBILITY_MODE_FORWARD: CompatibilityMode
COMPATIBILITY_MODE_FORWARD_TRANSITIVE: CompatibilityMode
COMPATIBILITY_MODE_FULL: CompatibilityMode
COMPATIBILITY_MODE_FULL_TRANSITIVE: CompatibilityMode
COMPATIBILITY_MODE_NONE: CompatibilityMode

class SchemaVersion(_message.Message):
    __slots__ = ("subject", "version", "id", "fingerprint", "descriptor_set", "registered", "mode")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_SET_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    subject: str
    version: int
    id: int
    fingerprint: str
    descriptor_set: bytes
    registered: _timestamp_pb2.Timestamp
    mode: CompatibilityMode
    def __init__(self, subject: _Optional[str] = ..., version: _Optional[int] = ..., id: _Optional[int] = ..., fingerprint: _Optional[str] = ..., descriptor_set: _Optional[bytes] = ..., registered: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., mode: _Optional[_Union[CompatibilityMode, str]] = ...) -> None: ...

class CompatibilityViolation(_message.Message):
    __slots__ = ("rule", "path", "message", "against_version")
    RULE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AGAINST_VERSION_FIELD_NUMBER: _ClassVar[int]
    rule: str
    path: str
    message: str
    against_version: int
    def __init__(self, rule: _Optional[str] = ..., path: _Optional[str] = ..., message: _Optional[str] = ..., against_version: _Optional[int] = ...) -> None: ...

class RegisterSchemaRequest(_message.Message):
    __slots__ = ("subject", "descriptor_set", "mode")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_SET_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    subject: str
    descriptor_set: bytes
    mode: CompatibilityMode
    def __init__(self, subject: _Optional[str] = ..., descriptor_set: _Optional[bytes] = ..., mode: _Optional[_Union[CompatibilityMode, str]] = ...) -> None: ...

class RegisterSchemaResponse(_message.Message):
    __slots__ = ("schema", "created")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    schema: SchemaVersion
    created: bool
    def __init__(self, schema: _Optional[_Union[SchemaVersion, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class CheckSchemaRequest(_message.Message):
    __slots__ = ("subject", "descriptor_set", "mode")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_SET_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    subject: str
    descriptor_set: bytes
    mode: CompatibilityMode
    def __init__(self, subject: _Optional[str] = ..., descriptor_set: _Optional[bytes] = ..., mode: _Optional[_Union[CompatibilityMode, str]] = ...) -> None: ...

class CheckSchemaResponse(_message.Message):
    __slots__ = ("compatible", "violations", "mode")
    COMPATIBLE_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    compatible: bool
    violations: _containers.RepeatedCompositeFieldContainer[CompatibilityViolation]
    mode: CompatibilityMode
    def __init__(self, compatible: _Optional[bool] = ..., violations: _Optional[_Iterable[_Union[CompatibilityViolation, _Mapping]]] = ..., mode: _Optional[_Union[CompatibilityMode, str]] = ...) -> None: ...

class ListSchemasRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SchemaSubject(_message.Message):
    __slots__ = ("subject", "mode", "versions")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    subject: str
    mode: CompatibilityMode
    versions: _containers.RepeatedCompositeFieldContainer[SchemaVersion]
    def __init__(self, subject: _Optional[str] = ..., mode: _Optional[_Union[CompatibilityMode, str]] = ..., versions: _Optional[_Iterable[_Union[SchemaVersion, _Mapping]]] = ...) -> None: ...

class ListSchemasResponse(_message.Message):
    __slots__ = ("subjects",)
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    subjects: _containers.RepeatedCompositeFieldContainer[SchemaSubject]
    def __init__(self, subjects: _Optional[_Iterable[_Union[SchemaSubject, _Mapping]]] = ...) -> None: ...

class GetSchemaRequest(_message.Message):
    __slots__ = ("subject", "version")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    subject: str
    version: int
    def __init__(self, subject: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetSchemaResponse(_message.Message):
    __slots__ = ("schema",)
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    schema: SchemaVersion
    def __init__(self, schema: _Optional[_Union[SchemaVersion, _Mapping]] = ...) -> None: ...
