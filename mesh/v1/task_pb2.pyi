import datetime

from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mesh.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PriorityClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_CLASS_UNSPECIFIED: _ClassVar[PriorityClass]
    PRIORITY_CLASS_INTERACTIVE: _ClassVar[PriorityClass]
    PRIORITY_CLASS_STANDARD: _ClassVar[PriorityClass]
    PRIORITY_CLASS_BATCH: _ClassVar[PriorityClass]

class QosTier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QOS_TIER_UNSPECIFIED: _ClassVar[QosTier]
    QOS_TIER_GUARANTEED: _ClassVar[QosTier]
    QOS_TIER_BEST_EFFORT: _ClassVar[QosTier]

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_QUEUED: _ClassVar[TaskState]
    TASK_STATE_RUNNING: _ClassVar[TaskState]
    TASK_STATE_RETRYING: _ClassVar[TaskState]
    TASK_STATE_SUCCEEDED: _ClassVar[TaskState]
    TASK_STATE_FAILED: _ClassVar[TaskState]
    TASK_STATE_CANCELLED: _ClassVar[TaskState]
    TASK_STATE_DEAD_LETTERED: _ClassVar[TaskState]
PRIORITY_CLASS_UNSPECIFIED: PriorityClass
PRIORITY_CLASS_INTERACTIVE: PriorityClass
PRIORITY_CLASS_STANDARD: PriorityClass
PRIORITY_CLASS_BATCH: PriorityClass
QOS_TIER_UNSPECIFIED: QosTier
QOS_TIER_GUARANTEED: QosTier
QOS_TIER_BEST_EFFORT: QosTier
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_QUEUED: TaskState
TASK_STATE_RUNNING: TaskState
TASK_STATE_RETRYING: TaskState
TASK_STATE_SUCCEEDED: TaskState
TASK_STATE_FAILED: TaskState
TASK_STATE_CANCELLED: TaskState
TASK_STATE_DEAD_LETTERED: TaskState

class EchoInput(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class EmbedInput(_message.Message):
    __slots__ = ("text", "model")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    text: str
    model: str
    def __init__(self, text: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class StreamInput(_message.Message):
    __slots__ = ("text", "chunks", "chunk_delay_ms")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    text: str
    chunks: int
    chunk_delay_ms: int
    def __init__(self, text: _Optional[str] = ..., chunks: _Optional[int] = ..., chunk_delay_ms: _Optional[int] = ...) -> None: ...

class FanOutInput(_message.Message):
    __slots__ = ("child_kind", "texts")
    CHILD_KIND_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    child_kind: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, child_kind: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ...) -> None: ...

class WebhookInput(_message.Message):
    __slots__ = ("url", "body")
    URL_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    url: str
    body: str
    def __init__(self, url: _Optional[str] = ..., body: _Optional[str] = ...) -> None: ...

class DocEmbedInput(_message.Message):
    __slots__ = ("text", "model", "chunk_words")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CHUNK_WORDS_FIELD_NUMBER: _ClassVar[int]
    text: str
    model: str
    chunk_words: int
    def __init__(self, text: _Optional[str] = ..., model: _Optional[str] = ..., chunk_words: _Optional[int] = ...) -> None: ...

class InferInput(_message.Message):
    __slots__ = ("model", "model_version", "inputs", "outputs", "parameters", "raw_input_contents")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _tensor_pb2.InferParameter
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_tensor_pb2.InferParameter, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    RAW_INPUT_CONTENTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    inputs: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.InferInputTensor]
    outputs: _containers.RepeatedScalarFieldContainer[str]
    parameters: _containers.MessageMap[str, _tensor_pb2.InferParameter]
    raw_input_contents: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[_tensor_pb2.InferInputTensor, _Mapping]]] = ..., outputs: _Optional[_Iterable[str]] = ..., parameters: _Optional[_Mapping[str, _tensor_pb2.InferParameter]] = ..., raw_input_contents: _Optional[_Iterable[bytes]] = ...) -> None: ...

class TensorOutput(_message.Message):
    __slots__ = ("model", "outputs", "raw_output_contents", "backend")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    RAW_OUTPUT_CONTENTS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    model: str
    outputs: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.InferOutputTensor]
    raw_output_contents: _containers.RepeatedScalarFieldContainer[bytes]
    backend: str
    def __init__(self, model: _Optional[str] = ..., outputs: _Optional[_Iterable[_Union[_tensor_pb2.InferOutputTensor, _Mapping]]] = ..., raw_output_contents: _Optional[_Iterable[bytes]] = ..., backend: _Optional[str] = ...) -> None: ...

class TaskPayload(_message.Message):
    __slots__ = ("echo", "embed", "stream", "fan_out", "webhook", "doc_embed", "custom", "infer")
    ECHO_FIELD_NUMBER: _ClassVar[int]
    EMBED_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    FAN_OUT_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    DOC_EMBED_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_FIELD_NUMBER: _ClassVar[int]
    INFER_FIELD_NUMBER: _ClassVar[int]
    echo: EchoInput
    embed: EmbedInput
    stream: StreamInput
    fan_out: FanOutInput
    webhook: WebhookInput
    doc_embed: DocEmbedInput
    custom: _any_pb2.Any
    infer: InferInput
    def __init__(self, echo: _Optional[_Union[EchoInput, _Mapping]] = ..., embed: _Optional[_Union[EmbedInput, _Mapping]] = ..., stream: _Optional[_Union[StreamInput, _Mapping]] = ..., fan_out: _Optional[_Union[FanOutInput, _Mapping]] = ..., webhook: _Optional[_Union[WebhookInput, _Mapping]] = ..., doc_embed: _Optional[_Union[DocEmbedInput, _Mapping]] = ..., custom: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., infer: _Optional[_Union[InferInput, _Mapping]] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("task_id", "tenant", "kind", "priority_class", "priority", "qos", "idempotency_key", "deadline", "payload", "schema_version", "ordering_key", "parent_task_id", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    ORDERING_KEY_FIELD_NUMBER: _ClassVar[int]
    PARENT_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    tenant: str
    kind: str
    priority_class: PriorityClass
    priority: int
    qos: QosTier
    idempotency_key: str
    deadline: _timestamp_pb2.Timestamp
    payload: TaskPayload
    schema_version: int
    ordering_key: str
    parent_task_id: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, task_id: _Optional[str] = ..., tenant: _Optional[str] = ..., kind: _Optional[str] = ..., priority_class: _Optional[_Union[PriorityClass, str]] = ..., priority: _Optional[int] = ..., qos: _Optional[_Union[QosTier, str]] = ..., idempotency_key: _Optional[str] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payload: _Optional[_Union[TaskPayload, _Mapping]] = ..., schema_version: _Optional[int] = ..., ordering_key: _Optional[str] = ..., parent_task_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("model", "values")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    model: str
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class TaskOutput(_message.Message):
    __slots__ = ("text", "embedding", "data", "custom", "tensors")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    text: str
    embedding: Embedding
    data: bytes
    custom: _any_pb2.Any
    tensors: TensorOutput
    def __init__(self, text: _Optional[str] = ..., embedding: _Optional[_Union[Embedding, _Mapping]] = ..., data: _Optional[bytes] = ..., custom: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., tensors: _Optional[_Union[TensorOutput, _Mapping]] = ...) -> None: ...

class TaskError(_message.Message):
    __slots__ = ("error_class", "message", "retryable")
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    error_class: str
    message: str
    retryable: bool
    def __init__(self, error_class: _Optional[str] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("task_id", "sequence", "timestamp", "state", "output", "partial_confidence", "final", "attempt", "error", "step", "spec", "worker_id", "traceparent", "dropped", "retry_after", "child_task_ids", "work_item_sequence", "live_index", "checkpoint")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    CHILD_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    WORK_ITEM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LIVE_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    sequence: int
    timestamp: _timestamp_pb2.Timestamp
    state: TaskState
    output: TaskOutput
    partial_confidence: float
    final: bool
    attempt: int
    error: TaskError
    step: str
    spec: TaskSpec
    worker_id: str
    traceparent: str
    dropped: int
    retry_after: _duration_pb2.Duration
    child_task_ids: _containers.RepeatedScalarFieldContainer[str]
    work_item_sequence: int
    live_index: int
    checkpoint: bytes
    def __init__(self, task_id: _Optional[str] = ..., sequence: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[TaskState, str]] = ..., output: _Optional[_Union[TaskOutput, _Mapping]] = ..., partial_confidence: _Optional[float] = ..., final: _Optional[bool] = ..., attempt: _Optional[int] = ..., error: _Optional[_Union[TaskError, _Mapping]] = ..., step: _Optional[str] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., worker_id: _Optional[str] = ..., traceparent: _Optional[str] = ..., dropped: _Optional[int] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., child_task_ids: _Optional[_Iterable[str]] = ..., work_item_sequence: _Optional[int] = ..., live_index: _Optional[int] = ..., checkpoint: _Optional[bytes] = ...) -> None: ...

class TaskInfo(_message.Message):
    __slots__ = ("spec", "state", "created", "updated", "last_sequence", "attempt", "result", "error")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    spec: TaskSpec
    state: TaskState
    created: _timestamp_pb2.Timestamp
    updated: _timestamp_pb2.Timestamp
    last_sequence: int
    attempt: int
    result: TaskOutput
    error: TaskError
    def __init__(self, spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., state: _Optional[_Union[TaskState, str]] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_sequence: _Optional[int] = ..., attempt: _Optional[int] = ..., result: _Optional[_Union[TaskOutput, _Mapping]] = ..., error: _Optional[_Union[TaskError, _Mapping]] = ...) -> None: ...
