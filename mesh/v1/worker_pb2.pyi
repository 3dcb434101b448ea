import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from mesh.v1 import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterWorkerRequest(_message.Message):
    __slots__ = ("worker",)
    WORKER_FIELD_NUMBER: _ClassVar[int]
    worker: _status_pb2.WorkerStatus
    def __init__(self, worker: _Optional[_Union[_status_pb2.WorkerStatus, _Mapping]] = ...) -> None: ...

class RegisterWorkerResponse(_message.Message):
    __slots__ = ("heartbeat_interval",)
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval: _duration_pb2.Duration
    def __init__(self, heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker", "running_task_ids", "in_flight_ack_subjects", "load")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_ACK_SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    worker: _status_pb2.WorkerStatus
    running_task_ids: _containers.RepeatedScalarFieldContainer[str]
    in_flight_ack_subjects: _containers.RepeatedScalarFieldContainer[str]
    load: _status_pb2.WorkerLoad
    def __init__(self, worker: _Optional[_Union[_status_pb2.WorkerStatus, _Mapping]] = ..., running_task_ids: _Optional[_Iterable[str]] = ..., in_flight_ack_subjects: _Optional[_Iterable[str]] = ..., load: _Optional[_Union[_status_pb2.WorkerLoad, _Mapping]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("drain",)
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    drain: bool
    def __init__(self, drain: _Optional[bool] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[_status_pb2.WorkerStatus]
    def __init__(self, workers: _Optional[_Iterable[_Union[_status_pb2.WorkerStatus, _Mapping]]] = ...) -> None: ...
