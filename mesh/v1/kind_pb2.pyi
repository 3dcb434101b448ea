import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StepDeclaration(_message.Message):
    __slots__ = ("name", "pool", "timeout", "max_attempts")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    pool: str
    timeout: _duration_pb2.Duration
    max_attempts: int
    def __init__(self, name: _Optional[str] = ..., pool: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class KindDeclaration(_message.Message):
    __slots__ = ("name", "input_type", "output_type", "steps", "required_labels", "max_attempts", "step_timeout", "builtin", "description")
    class RequiredLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    STEP_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    input_type: str
    output_type: str
    steps: _containers.RepeatedCompositeFieldContainer[StepDeclaration]
    required_labels: _containers.ScalarMap[str, str]
    max_attempts: int
    step_timeout: _duration_pb2.Duration
    builtin: bool
    description: str
    def __init__(self, name: _Optional[str] = ..., input_type: _Optional[str] = ..., output_type: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[StepDeclaration, _Mapping]]] = ..., required_labels: _Optional[_Mapping[str, str]] = ..., max_attempts: _Optional[int] = ..., step_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., builtin: _Optional[bool] = ..., description: _Optional[str] = ...) -> None: ...

class RegisterKindRequest(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: KindDeclaration
    def __init__(self, kind: _Optional[_Union[KindDeclaration, _Mapping]] = ...) -> None: ...

class RegisterKindResponse(_message.Message):
    __slots__ = ("kind", "created")
    KIND_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    kind: KindDeclaration
    created: bool
    def __init__(self, kind: _Optional[_Union[KindDeclaration, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class ListKindsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class KindWorker(_message.Message):
    __slots__ = ("worker_id", "worker_name", "schema_versions", "labels", "build_id", "capacity", "in_flight")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    worker_name: str
    schema_versions: _containers.RepeatedScalarFieldContainer[int]
    labels: _containers.ScalarMap[str, str]
    build_id: str
    capacity: int
    in_flight: int
    def __init__(self, worker_id: _Optional[str] = ..., worker_name: _Optional[str] = ..., schema_versions: _Optional[_Iterable[int]] = ..., labels: _Optional[_Mapping[str, str]] = ..., build_id: _Optional[str] = ..., capacity: _Optional[int] = ..., in_flight: _Optional[int] = ...) -> None: ...

class KindInfo(_message.Message):
    __slots__ = ("kind", "schema_versions", "workers", "backlog")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    kind: KindDeclaration
    schema_versions: _containers.RepeatedScalarFieldContainer[int]
    workers: _containers.RepeatedCompositeFieldContainer[KindWorker]
    backlog: _containers.RepeatedCompositeFieldContainer[KindBacklog]
    def __init__(self, kind: _Optional[_Union[KindDeclaration, _Mapping]] = ..., schema_versions: _Optional[_Iterable[int]] = ..., workers: _Optional[_Iterable[_Union[KindWorker, _Mapping]]] = ..., backlog: _Optional[_Iterable[_Union[KindBacklog, _Mapping]]] = ...) -> None: ...

class KindBacklog(_message.Message):
    __slots__ = ("step", "schema_version", "queued", "compatible_workers", "note")
    STEP_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    COMPATIBLE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    step: str
    schema_version: int
    queued: int
    compatible_workers: int
    note: str
    def __init__(self, step: _Optional[str] = ..., schema_version: _Optional[int] = ..., queued: _Optional[int] = ..., compatible_workers: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class ListKindsResponse(_message.Message):
    __slots__ = ("kinds",)
    KINDS_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedCompositeFieldContainer[KindInfo]
    def __init__(self, kinds: _Optional[_Iterable[_Union[KindInfo, _Mapping]]] = ...) -> None: ...
