import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mesh.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkItem(_message.Message):
    __slots__ = ("spec", "step_index", "last_event_sequence", "last_event_stream_sequence", "carry", "traceparent", "admitted", "enqueued")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_STREAM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CARRY_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_FIELD_NUMBER: _ClassVar[int]
    spec: _task_pb2.TaskSpec
    step_index: int
    last_event_sequence: int
    last_event_stream_sequence: int
    carry: _containers.RepeatedCompositeFieldContainer[_task_pb2.TaskOutput]
    traceparent: str
    admitted: _timestamp_pb2.Timestamp
    enqueued: _timestamp_pb2.Timestamp
    def __init__(self, spec: _Optional[_Union[_task_pb2.TaskSpec, _Mapping]] = ..., step_index: _Optional[int] = ..., last_event_sequence: _Optional[int] = ..., last_event_stream_sequence: _Optional[int] = ..., carry: _Optional[_Iterable[_Union[_task_pb2.TaskOutput, _Mapping]]] = ..., traceparent: _Optional[str] = ..., admitted: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., enqueued: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
