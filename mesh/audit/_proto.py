"""The audit on the wire (`mesh.v1.audit_pb2`) and back: field for field, so a record read through
the gateway hashes to what was stored (a round trip loses nothing: tests/unit/test_audit_proto.py)."""

from __future__ import annotations

from mesh.audit._checkpoint import Checkpoint
from mesh.audit._entries import Stored
from mesh.audit._record import Actor, AuditRecord, Entry
from mesh.v1 import audit_pb2


def record_to_proto(record: AuditRecord, stream_sequence: int = 0) -> audit_pb2.AuditRecord:
    e = record.entry
    return audit_pb2.AuditRecord(
        seq=record.seq,
        time=record.time,
        actor=audit_pb2.AuditActor(
            credential_id=e.actor.credential_id, tenant=e.actor.tenant, roles=e.actor.roles, amr=e.actor.amr
        ),
        action=e.action,
        resource=e.resource,
        before=e.before,
        after=e.after,
        decision=e.decision,
        policy_ids=e.policy_ids,
        outcome=e.outcome,
        detail=e.detail,
        trace_id=e.trace_id,
        surface=e.surface,
        prev=record.prev,
        hash=record.hash,
        stream_sequence=stream_sequence,
    )


def record_from_proto(message: audit_pb2.AuditRecord) -> AuditRecord:
    """The record a message carries; ValueError if its decision, outcome or surface is not one
    a record can hold (a record that was stored with one never decoded in the first place)."""
    actor = Actor(
        message.actor.credential_id, message.actor.tenant, tuple(message.actor.roles), tuple(message.actor.amr)
    )
    entry = Entry(
        actor=actor,
        action=message.action,
        resource=message.resource,
        decision=message.decision,
        outcome=message.outcome,
        surface=message.surface,
        detail=message.detail,
        before=message.before,
        after=message.after,
        policy_ids=tuple(message.policy_ids),
        trace_id=message.trace_id,
    )
    return AuditRecord(message.seq, message.time, entry, message.prev, message.hash)


def stored_to_proto(stored: Stored) -> audit_pb2.ExportAuditResponse:
    if stored.record is not None:
        return audit_pb2.ExportAuditResponse(record=record_to_proto(stored.record, stored.stream_sequence))
    if stored.checkpoint is not None:
        c = stored.checkpoint
        return audit_pb2.ExportAuditResponse(
            checkpoint=audit_pb2.AuditCheckpoint(
                seq=c.seq,
                head=c.head,
                time=c.time,
                key_id=c.key_id,
                signature=c.signature,
                stream_sequence=stored.stream_sequence,
            )
        )
    return audit_pb2.ExportAuditResponse(
        unreadable=audit_pb2.AuditUnreadable(
            data=stored.raw, error=stored.error, stream_sequence=stored.stream_sequence
        )
    )


def stored_from_proto(part: audit_pb2.ExportAuditResponse) -> Stored:
    """One exported message as stored; a record the client cannot hold becomes an unreadable one."""
    kind = part.WhichOneof("part")
    if kind == "record":
        try:
            return Stored(part.record.stream_sequence, record_from_proto(part.record))
        except ValueError as exc:
            return Stored(part.record.stream_sequence, None, str(exc), part.record.SerializeToString())
    if kind == "checkpoint":
        c = part.checkpoint
        return Stored(c.stream_sequence, Checkpoint(c.seq, c.head, c.time, c.key_id, c.signature))
    if kind == "unreadable":
        return Stored(part.unreadable.stream_sequence, None, part.unreadable.error, part.unreadable.data)
    raise ValueError(f"an export part that is no entry ({kind or 'empty'})")
