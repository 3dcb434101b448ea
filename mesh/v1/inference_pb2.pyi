from mesh.v1 import status_pb2 as _status_pb2
from mesh.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InferRequest(_message.Message):
    __slots__ = ("model", "texts", "priority_class", "input_ids", "attention_mask")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_FIELD_NUMBER: _ClassVar[int]
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_MASK_FIELD_NUMBER: _ClassVar[int]
    model: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    priority_class: _task_pb2.PriorityClass
    input_ids: Tensor
    attention_mask: Tensor
    def __init__(self, model: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ..., priority_class: _Optional[_Union[_task_pb2.PriorityClass, str]] = ..., input_ids: _Optional[_Union[Tensor, _Mapping]] = ..., attention_mask: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("datatype", "shape", "raw")
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    datatype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    raw: bytes
    def __init__(self, datatype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., raw: _Optional[bytes] = ...) -> None: ...

class InferResponse(_message.Message):
    __slots__ = ("model", "embeddings", "backend")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    model: str
    embeddings: _containers.RepeatedCompositeFieldContainer[_task_pb2.Embedding]
    backend: str
    def __init__(self, model: _Optional[str] = ..., embeddings: _Optional[_Iterable[_Union[_task_pb2.Embedding, _Mapping]]] = ..., backend: _Optional[str] = ...) -> None: ...

class InferStreamRequest(_message.Message):
    __slots__ = ("model", "text", "chunk_words", "priority_class")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_WORDS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_FIELD_NUMBER: _ClassVar[int]
    model: str
    text: str
    chunk_words: int
    priority_class: _task_pb2.PriorityClass
    def __init__(self, model: _Optional[str] = ..., text: _Optional[str] = ..., chunk_words: _Optional[int] = ..., priority_class: _Optional[_Union[_task_pb2.PriorityClass, str]] = ...) -> None: ...

class InferStreamResponse(_message.Message):
    __slots__ = ("sequence", "chunk_text", "embedding", "partial_confidence", "final")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_TEXT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    chunk_text: str
    embedding: _task_pb2.Embedding
    partial_confidence: float
    final: bool
    def __init__(self, sequence: _Optional[int] = ..., chunk_text: _Optional[str] = ..., embedding: _Optional[_Union[_task_pb2.Embedding, _Mapping]] = ..., partial_confidence: _Optional[float] = ..., final: _Optional[bool] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "dimensions", "max_sequence_length", "backend", "ready")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQUENCE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    name: str
    dimensions: int
    max_sequence_length: int
    backend: str
    ready: bool
    def __init__(self, name: _Optional[str] = ..., dimensions: _Optional[int] = ..., max_sequence_length: _Optional[int] = ..., backend: _Optional[str] = ..., ready: _Optional[bool] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "backends")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    backends: _containers.RepeatedCompositeFieldContainer[_status_pb2.InferenceBackendStatus]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., backends: _Optional[_Iterable[_Union[_status_pb2.InferenceBackendStatus, _Mapping]]] = ...) -> None: ...
