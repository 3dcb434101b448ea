from mesh.v1 import status_pb2 as _status_pb2
from mesh.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AdmitTaskRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: _task_pb2.TaskSpec
    def __init__(self, spec: _Optional[_Union[_task_pb2.TaskSpec, _Mapping]] = ...) -> None: ...

class AdmitTaskResponse(_message.Message):
    __slots__ = ("task_id", "deduplicated", "sequence")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    deduplicated: bool
    sequence: int
    def __init__(self, task_id: _Optional[str] = ..., deduplicated: _Optional[bool] = ..., sequence: _Optional[int] = ...) -> None: ...

class AdmitTasksRequest(_message.Message):
    __slots__ = ("specs",)
    SPECS_FIELD_NUMBER: _ClassVar[int]
    specs: _containers.RepeatedCompositeFieldContainer[_task_pb2.TaskSpec]
    def __init__(self, specs: _Optional[_Iterable[_Union[_task_pb2.TaskSpec, _Mapping]]] = ...) -> None: ...

class AdmitTasksResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AdmitTaskResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[AdmitTaskResponse, _Mapping]]] = ...) -> None: ...

class AdmitEachRequest(_message.Message):
    __slots__ = ("specs", "traceparents")
    SPECS_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENTS_FIELD_NUMBER: _ClassVar[int]
    specs: _containers.RepeatedCompositeFieldContainer[_task_pb2.TaskSpec]
    traceparents: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, specs: _Optional[_Iterable[_Union[_task_pb2.TaskSpec, _Mapping]]] = ..., traceparents: _Optional[_Iterable[str]] = ...) -> None: ...

class AdmitEachResponse(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[AdmitOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[AdmitOutcome, _Mapping]]] = ...) -> None: ...

class AdmitOutcome(_message.Message):
    __slots__ = ("admitted", "refused")
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    admitted: AdmitTaskResponse
    refused: Refusal
    def __init__(self, admitted: _Optional[_Union[AdmitTaskResponse, _Mapping]] = ..., refused: _Optional[_Union[Refusal, _Mapping]] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("code", "message", "field", "retry_after_s")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    field: str
    retry_after_s: float
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., field: _Optional[str] = ..., retry_after_s: _Optional[float] = ...) -> None: ...

class AbortTaskRequest(_message.Message):
    __slots__ = ("task_id", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AbortTaskResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _task_pb2.TaskState
    def __init__(self, state: _Optional[_Union[_task_pb2.TaskState, str]] = ...) -> None: ...

class GetQueueStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetQueueStatusResponse(_message.Message):
    __slots__ = ("queues", "workers", "scaling", "tenant_queues", "inference_backends")
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    SCALING_FIELD_NUMBER: _ClassVar[int]
    TENANT_QUEUES_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_BACKENDS_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[_status_pb2.QueueStatus]
    workers: _containers.RepeatedCompositeFieldContainer[_status_pb2.WorkerStatus]
    scaling: _containers.RepeatedCompositeFieldContainer[_status_pb2.ScaleRecommendation]
    tenant_queues: _containers.RepeatedCompositeFieldContainer[_status_pb2.QueueStatus]
    inference_backends: _containers.RepeatedCompositeFieldContainer[_status_pb2.InferenceBackendStatus]
    def __init__(self, queues: _Optional[_Iterable[_Union[_status_pb2.QueueStatus, _Mapping]]] = ..., workers: _Optional[_Iterable[_Union[_status_pb2.WorkerStatus, _Mapping]]] = ..., scaling: _Optional[_Iterable[_Union[_status_pb2.ScaleRecommendation, _Mapping]]] = ..., tenant_queues: _Optional[_Iterable[_Union[_status_pb2.QueueStatus, _Mapping]]] = ..., inference_backends: _Optional[_Iterable[_Union[_status_pb2.InferenceBackendStatus, _Mapping]]] = ...) -> None: ...

class GetLoadReportRequest(_message.Message):
    __slots__ = ("window_s",)
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    window_s: float
    def __init__(self, window_s: _Optional[float] = ...) -> None: ...

class GetLoadReportResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: _status_pb2.LoadReport
    def __init__(self, report: _Optional[_Union[_status_pb2.LoadReport, _Mapping]] = ...) -> None: ...
