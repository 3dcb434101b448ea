import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConfigRevision(_message.Message):
    __slots__ = ("number", "digest", "state", "source", "author", "created", "finished", "parent", "reason", "steps", "manifest_json")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    number: int
    digest: str
    state: str
    source: str
    author: str
    created: _timestamp_pb2.Timestamp
    finished: _timestamp_pb2.Timestamp
    parent: int
    reason: str
    steps: _containers.RepeatedScalarFieldContainer[str]
    manifest_json: str
    def __init__(self, number: _Optional[int] = ..., digest: _Optional[str] = ..., state: _Optional[str] = ..., source: _Optional[str] = ..., author: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., parent: _Optional[int] = ..., reason: _Optional[str] = ..., steps: _Optional[_Iterable[str]] = ..., manifest_json: _Optional[str] = ...) -> None: ...

class RolloutStep(_message.Message):
    __slots__ = ("action", "component", "cost")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    action: str
    component: str
    cost: str
    def __init__(self, action: _Optional[str] = ..., component: _Optional[str] = ..., cost: _Optional[str] = ...) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class GetConfigResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: ConfigRevision
    def __init__(self, revision: _Optional[_Union[ConfigRevision, _Mapping]] = ...) -> None: ...

class PlanConfigRequest(_message.Message):
    __slots__ = ("manifest_json",)
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    manifest_json: str
    def __init__(self, manifest_json: _Optional[str] = ...) -> None: ...

class PlanConfigResponse(_message.Message):
    __slots__ = ("current", "steps", "refused", "steps_digest", "manifest_digest")
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    STEPS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    current: ConfigRevision
    steps: _containers.RepeatedCompositeFieldContainer[RolloutStep]
    refused: _containers.RepeatedScalarFieldContainer[str]
    steps_digest: str
    manifest_digest: str
    def __init__(self, current: _Optional[_Union[ConfigRevision, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[RolloutStep, _Mapping]]] = ..., refused: _Optional[_Iterable[str]] = ..., steps_digest: _Optional[str] = ..., manifest_digest: _Optional[str] = ...) -> None: ...

class ApplyConfigRequest(_message.Message):
    __slots__ = ("manifest_json", "base_digest", "steps_digest", "bake_seconds", "rollback_to", "override_policies")
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    BASE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    STEPS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    BAKE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_TO_FIELD_NUMBER: _ClassVar[int]
    OVERRIDE_POLICIES_FIELD_NUMBER: _ClassVar[int]
    manifest_json: str
    base_digest: str
    steps_digest: str
    bake_seconds: float
    rollback_to: int
    override_policies: bool
    def __init__(self, manifest_json: _Optional[str] = ..., base_digest: _Optional[str] = ..., steps_digest: _Optional[str] = ..., bake_seconds: _Optional[float] = ..., rollback_to: _Optional[int] = ..., override_policies: _Optional[bool] = ...) -> None: ...

class ApplyConfigResponse(_message.Message):
    __slots__ = ("phase", "message", "revision", "component", "final", "at")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    phase: str
    message: str
    revision: int
    component: str
    final: bool
    at: _timestamp_pb2.Timestamp
    def __init__(self, phase: _Optional[str] = ..., message: _Optional[str] = ..., revision: _Optional[int] = ..., component: _Optional[str] = ..., final: _Optional[bool] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListRevisionsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListRevisionsResponse(_message.Message):
    __slots__ = ("revisions",)
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    revisions: _containers.RepeatedCompositeFieldContainer[ConfigRevision]
    def __init__(self, revisions: _Optional[_Iterable[_Union[ConfigRevision, _Mapping]]] = ...) -> None: ...
