import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mesh.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConnectRequest(_message.Message):
    __slots__ = ("attach", "heartbeat", "partial", "checkpoint", "result", "failure", "spawn", "cancel_ack")
    ATTACH_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    SPAWN_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ACK_FIELD_NUMBER: _ClassVar[int]
    attach: Attach
    heartbeat: Heartbeat
    partial: PartialOutput
    checkpoint: Checkpoint
    result: StepResult
    failure: StepFailure
    spawn: SpawnChildren
    cancel_ack: CancelAck
    def __init__(self, attach: _Optional[_Union[Attach, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., partial: _Optional[_Union[PartialOutput, _Mapping]] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., result: _Optional[_Union[StepResult, _Mapping]] = ..., failure: _Optional[_Union[StepFailure, _Mapping]] = ..., spawn: _Optional[_Union[SpawnChildren, _Mapping]] = ..., cancel_ack: _Optional[_Union[CancelAck, _Mapping]] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("attached", "assignment", "cancel", "drain", "report_ack", "spawned", "child_finished")
    ATTACHED_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    REPORT_ACK_FIELD_NUMBER: _ClassVar[int]
    SPAWNED_FIELD_NUMBER: _ClassVar[int]
    CHILD_FINISHED_FIELD_NUMBER: _ClassVar[int]
    attached: Attached
    assignment: Assignment
    cancel: CancelAssignment
    drain: Drain
    report_ack: ReportAck
    spawned: ChildrenSpawned
    child_finished: ChildFinished
    def __init__(self, attached: _Optional[_Union[Attached, _Mapping]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., cancel: _Optional[_Union[CancelAssignment, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., report_ack: _Optional[_Union[ReportAck, _Mapping]] = ..., spawned: _Optional[_Union[ChildrenSpawned, _Mapping]] = ..., child_finished: _Optional[_Union[ChildFinished, _Mapping]] = ...) -> None: ...

class KindOffer(_message.Message):
    __slots__ = ("kind", "schema_versions", "steps", "input_type", "output_type")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TYPE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    schema_versions: _containers.RepeatedScalarFieldContainer[int]
    steps: _containers.RepeatedScalarFieldContainer[str]
    input_type: str
    output_type: str
    def __init__(self, kind: _Optional[str] = ..., schema_versions: _Optional[_Iterable[int]] = ..., steps: _Optional[_Iterable[str]] = ..., input_type: _Optional[str] = ..., output_type: _Optional[str] = ...) -> None: ...

class Attach(_message.Message):
    __slots__ = ("session_id", "worker_name", "kinds", "labels", "capacity", "build_id", "sdk")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    SDK_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    worker_name: str
    kinds: _containers.RepeatedCompositeFieldContainer[KindOffer]
    labels: _containers.ScalarMap[str, str]
    capacity: int
    build_id: str
    sdk: str
    def __init__(self, session_id: _Optional[str] = ..., worker_name: _Optional[str] = ..., kinds: _Optional[_Iterable[_Union[KindOffer, _Mapping]]] = ..., labels: _Optional[_Mapping[str, str]] = ..., capacity: _Optional[int] = ..., build_id: _Optional[str] = ..., sdk: _Optional[str] = ...) -> None: ...

class Attached(_message.Message):
    __slots__ = ("session_id", "worker_id", "heartbeat_interval", "resume_window", "resumed")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    RESUME_WINDOW_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    worker_id: str
    heartbeat_interval: _duration_pb2.Duration
    resume_window: _duration_pb2.Duration
    resumed: bool
    def __init__(self, session_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., resume_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., resumed: _Optional[bool] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("running", "draining")
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    running: _containers.RepeatedScalarFieldContainer[str]
    draining: bool
    def __init__(self, running: _Optional[_Iterable[str]] = ..., draining: _Optional[bool] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("assignment_id", "spec", "step", "step_index", "carry", "attempt", "resume_from", "checkpoint", "step_deadline", "traceparent", "worker_id")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    CARRY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    STEP_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    spec: _task_pb2.TaskSpec
    step: str
    step_index: int
    carry: _containers.RepeatedCompositeFieldContainer[_task_pb2.TaskOutput]
    attempt: int
    resume_from: int
    checkpoint: bytes
    step_deadline: _timestamp_pb2.Timestamp
    traceparent: str
    worker_id: str
    def __init__(self, assignment_id: _Optional[str] = ..., spec: _Optional[_Union[_task_pb2.TaskSpec, _Mapping]] = ..., step: _Optional[str] = ..., step_index: _Optional[int] = ..., carry: _Optional[_Iterable[_Union[_task_pb2.TaskOutput, _Mapping]]] = ..., attempt: _Optional[int] = ..., resume_from: _Optional[int] = ..., checkpoint: _Optional[bytes] = ..., step_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., traceparent: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class PartialOutput(_message.Message):
    __slots__ = ("assignment_id", "sequence", "output", "confidence")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    sequence: int
    output: _task_pb2.TaskOutput
    confidence: float
    def __init__(self, assignment_id: _Optional[str] = ..., sequence: _Optional[int] = ..., output: _Optional[_Union[_task_pb2.TaskOutput, _Mapping]] = ..., confidence: _Optional[float] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("assignment_id", "sequence", "state")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    sequence: int
    state: bytes
    def __init__(self, assignment_id: _Optional[str] = ..., sequence: _Optional[int] = ..., state: _Optional[bytes] = ...) -> None: ...

class StepResult(_message.Message):
    __slots__ = ("assignment_id", "outputs")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    outputs: _containers.RepeatedCompositeFieldContainer[_task_pb2.TaskOutput]
    def __init__(self, assignment_id: _Optional[str] = ..., outputs: _Optional[_Iterable[_Union[_task_pb2.TaskOutput, _Mapping]]] = ...) -> None: ...

class StepFailure(_message.Message):
    __slots__ = ("assignment_id", "error_class", "message", "retryable")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    error_class: str
    message: str
    retryable: bool
    def __init__(self, assignment_id: _Optional[str] = ..., error_class: _Optional[str] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class SpawnChildren(_message.Message):
    __slots__ = ("assignment_id", "request_id", "children")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    request_id: int
    children: _containers.RepeatedCompositeFieldContainer[_task_pb2.TaskSpec]
    def __init__(self, assignment_id: _Optional[str] = ..., request_id: _Optional[int] = ..., children: _Optional[_Iterable[_Union[_task_pb2.TaskSpec, _Mapping]]] = ...) -> None: ...

class ChildrenSpawned(_message.Message):
    __slots__ = ("assignment_id", "request_id", "task_ids")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    request_id: int
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, assignment_id: _Optional[str] = ..., request_id: _Optional[int] = ..., task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ChildFinished(_message.Message):
    __slots__ = ("assignment_id", "event")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    event: _task_pb2.TaskEvent
    def __init__(self, assignment_id: _Optional[str] = ..., event: _Optional[_Union[_task_pb2.TaskEvent, _Mapping]] = ...) -> None: ...

class CancelAck(_message.Message):
    __slots__ = ("assignment_id",)
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    def __init__(self, assignment_id: _Optional[str] = ...) -> None: ...

class CancelAssignment(_message.Message):
    __slots__ = ("assignment_id", "reason")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    reason: str
    def __init__(self, assignment_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReportAck(_message.Message):
    __slots__ = ("assignment_id", "partial", "checkpoint", "final", "stale")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    partial: int
    checkpoint: int
    final: bool
    stale: bool
    def __init__(self, assignment_id: _Optional[str] = ..., partial: _Optional[int] = ..., checkpoint: _Optional[int] = ..., final: _Optional[bool] = ..., stale: _Optional[bool] = ...) -> None: ...

class SessionRecord(_message.Message):
    __slots__ = ("worker_id", "worker_name", "labels", "capacity", "in_flight", "build_id", "sdk", "offers", "updated")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    SDK_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    worker_name: str
    labels: _containers.ScalarMap[str, str]
    capacity: int
    in_flight: int
    build_id: str
    sdk: str
    offers: _containers.RepeatedCompositeFieldContainer[KindOffer]
    updated: _timestamp_pb2.Timestamp
    def __init__(self, worker_id: _Optional[str] = ..., worker_name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., capacity: _Optional[int] = ..., in_flight: _Optional[int] = ..., build_id: _Optional[str] = ..., sdk: _Optional[str] = ..., offers: _Optional[_Iterable[_Union[KindOffer, _Mapping]]] = ..., updated: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
