import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mesh.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FailureClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILURE_CLASS_UNSPECIFIED: _ClassVar[FailureClass]
    FAILURE_CLASS_POISON_INPUT: _ClassVar[FailureClass]
    FAILURE_CLASS_SCHEMA_MISMATCH: _ClassVar[FailureClass]
    FAILURE_CLASS_TIMEOUT: _ClassVar[FailureClass]
    FAILURE_CLASS_RESOURCE_EXHAUSTION: _ClassVar[FailureClass]
    FAILURE_CLASS_DEPENDENCY_DOWN: _ClassVar[FailureClass]
    FAILURE_CLASS_BUG: _ClassVar[FailureClass]
FAILURE_CLASS_UNSPECIFIED: FailureClass
FAILURE_CLASS_POISON_INPUT: FailureClass
FAILURE_CLASS_SCHEMA_MISMATCH: FailureClass
FAILURE_CLASS_TIMEOUT: FailureClass
FAILURE_CLASS_RESOURCE_EXHAUSTION: FailureClass
FAILURE_CLASS_DEPENDENCY_DOWN: FailureClass
FAILURE_CLASS_BUG: FailureClass

class DeadLetter(_message.Message):
    __slots__ = ("task_id", "spec", "step", "error_class", "message", "fingerprint", "attempts", "worker_ids", "trace_id", "classification", "runbook", "dead_at", "replayed_as", "replay_of", "cli_commands", "dashboard_view", "console_path")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    WORKER_IDS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    RUNBOOK_FIELD_NUMBER: _ClassVar[int]
    DEAD_AT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_AS_FIELD_NUMBER: _ClassVar[int]
    REPLAY_OF_FIELD_NUMBER: _ClassVar[int]
    CLI_COMMANDS_FIELD_NUMBER: _ClassVar[int]
    DASHBOARD_VIEW_FIELD_NUMBER: _ClassVar[int]
    CONSOLE_PATH_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    spec: _task_pb2.TaskSpec
    step: str
    error_class: str
    message: str
    fingerprint: str
    attempts: int
    worker_ids: _containers.RepeatedScalarFieldContainer[str]
    trace_id: str
    classification: FailureClass
    runbook: str
    dead_at: _timestamp_pb2.Timestamp
    replayed_as: _containers.RepeatedScalarFieldContainer[str]
    replay_of: str
    cli_commands: _containers.RepeatedScalarFieldContainer[str]
    dashboard_view: str
    console_path: str
    def __init__(self, task_id: _Optional[str] = ..., spec: _Optional[_Union[_task_pb2.TaskSpec, _Mapping]] = ..., step: _Optional[str] = ..., error_class: _Optional[str] = ..., message: _Optional[str] = ..., fingerprint: _Optional[str] = ..., attempts: _Optional[int] = ..., worker_ids: _Optional[_Iterable[str]] = ..., trace_id: _Optional[str] = ..., classification: _Optional[_Union[FailureClass, str]] = ..., runbook: _Optional[str] = ..., dead_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replayed_as: _Optional[_Iterable[str]] = ..., replay_of: _Optional[str] = ..., cli_commands: _Optional[_Iterable[str]] = ..., dashboard_view: _Optional[str] = ..., console_path: _Optional[str] = ...) -> None: ...
