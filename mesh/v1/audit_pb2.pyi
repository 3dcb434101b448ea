from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditActor(_message.Message):
    __slots__ = ("credential_id", "tenant", "roles", "amr")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    AMR_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    tenant: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    amr: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, credential_id: _Optional[str] = ..., tenant: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., amr: _Optional[_Iterable[str]] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("seq", "time", "actor", "action", "resource", "before", "after", "decision", "policy_ids", "outcome", "detail", "trace_id", "surface", "prev", "hash", "stream_sequence")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    POLICY_IDS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    PREV_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    STREAM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time: str
    actor: AuditActor
    action: str
    resource: str
    before: str
    after: str
    decision: str
    policy_ids: _containers.RepeatedScalarFieldContainer[str]
    outcome: str
    detail: str
    trace_id: str
    surface: str
    prev: str
    hash: str
    stream_sequence: int
    def __init__(self, seq: _Optional[int] = ..., time: _Optional[str] = ..., actor: _Optional[_Union[AuditActor, _Mapping]] = ..., action: _Optional[str] = ..., resource: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ..., decision: _Optional[str] = ..., policy_ids: _Optional[_Iterable[str]] = ..., outcome: _Optional[str] = ..., detail: _Optional[str] = ..., trace_id: _Optional[str] = ..., surface: _Optional[str] = ..., prev: _Optional[str] = ..., hash: _Optional[str] = ..., stream_sequence: _Optional[int] = ...) -> None: ...

class AuditCheckpoint(_message.Message):
    __slots__ = ("seq", "head", "time", "key_id", "signature", "stream_sequence")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    STREAM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    head: str
    time: str
    key_id: str
    signature: str
    stream_sequence: int
    def __init__(self, seq: _Optional[int] = ..., head: _Optional[str] = ..., time: _Optional[str] = ..., key_id: _Optional[str] = ..., signature: _Optional[str] = ..., stream_sequence: _Optional[int] = ...) -> None: ...

class AuditUnreadable(_message.Message):
    __slots__ = ("data", "error", "stream_sequence")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STREAM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    error: str
    stream_sequence: int
    def __init__(self, data: _Optional[bytes] = ..., error: _Optional[str] = ..., stream_sequence: _Optional[int] = ...) -> None: ...

class ListAuditRecordsRequest(_message.Message):
    __slots__ = ("before_seq", "limit", "action_prefix", "credential_id")
    BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ACTION_PREFIX_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    before_seq: int
    limit: int
    action_prefix: str
    credential_id: str
    def __init__(self, before_seq: _Optional[int] = ..., limit: _Optional[int] = ..., action_prefix: _Optional[str] = ..., credential_id: _Optional[str] = ...) -> None: ...

class ListAuditRecordsResponse(_message.Message):
    __slots__ = ("records", "next_before_seq")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AuditRecord]
    next_before_seq: int
    def __init__(self, records: _Optional[_Iterable[_Union[AuditRecord, _Mapping]]] = ..., next_before_seq: _Optional[int] = ...) -> None: ...

class GetAuditRecordRequest(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class GetAuditRecordResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: AuditRecord
    def __init__(self, record: _Optional[_Union[AuditRecord, _Mapping]] = ...) -> None: ...

class ExportAuditRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditExportHeader(_message.Message):
    __slots__ = ("public_key", "key_id", "exported_at")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    EXPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    key_id: str
    exported_at: str
    def __init__(self, public_key: _Optional[str] = ..., key_id: _Optional[str] = ..., exported_at: _Optional[str] = ...) -> None: ...

class ExportAuditResponse(_message.Message):
    __slots__ = ("header", "record", "checkpoint", "unreadable")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_FIELD_NUMBER: _ClassVar[int]
    header: AuditExportHeader
    record: AuditRecord
    checkpoint: AuditCheckpoint
    unreadable: AuditUnreadable
    def __init__(self, header: _Optional[_Union[AuditExportHeader, _Mapping]] = ..., record: _Optional[_Union[AuditRecord, _Mapping]] = ..., checkpoint: _Optional[_Union[AuditCheckpoint, _Mapping]] = ..., unreadable: _Optional[_Union[AuditUnreadable, _Mapping]] = ...) -> None: ...
