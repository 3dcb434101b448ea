"""The tamper-evident audit: who did what to the mesh, in a hash chain with signed checkpoints.

Where it lives: the JetStream stream ``TM_AUDIT`` (`_stream`: ``deny_delete``, ``deny_purge``, no
roll-ups, no limits; only the gateway's NATS user may append, no service may update, purge or
delete it). Each administrative action is a record (`AuditRecord`: who — credential, tenant,
roles, ``amr`` —, action, resource, before/after digests, decision and policy ids, outcome,
trace id, surface, time) whose hash covers its content and the previous record's hash
(`_record`). Appends are fenced on the stream's last sequence, so writers never fork the chain
(`AuditLog`). Every N records or T seconds a checkpoint signs the head with the mesh's Ed25519
key (``<state>/audit/signing.key``, `_checkpoint`). An export (`_export`) carries the records,
the checkpoints and the public key off the mesh; `verify` names the first record that was
changed, removed, reordered, duplicated or cut off, and every checkpoint whose signature fails.

Pure parts (`_record`, `_checkpoint`, `_verify`, `_export`) need no NATS; `MemoryAuditStore` is
the in-memory `AuditStore` for unit tests, `JetStreamAuditStore` the real one.
"""

from mesh.audit._checkpoint import (
    PUBLIC_KEY_FILE,
    SIGNING_KEY_FILE,
    Checkpoint,
    Signer,
    ensure_signing_key,
    key_id_of,
    load_public_key,
    public_key_pem,
)
from mesh.audit._entries import Stored, decode
from mesh.audit._errors import AuditError, SigningKeyError, Unreadable
from mesh.audit._export import EXPORT_FORMAT, Export, anchors_of, entry_line, read_export, write_export
from mesh.audit._log import AuditLog
from mesh.audit._proto import record_from_proto, record_to_proto, stored_from_proto, stored_to_proto
from mesh.audit._record import (
    ALLOWED,
    ANONYMOUS,
    DECISIONS,
    FAILED,
    GENESIS,
    OUTCOMES,
    REFUSED,
    STARTED,
    SUCCEEDED,
    SURFACES,
    Actor,
    AuditRecord,
    Entry,
    canonical,
    digest,
    now_rfc3339,
    seal,
)
from mesh.audit._store import AuditStore, JetStreamAuditStore, MemoryAuditStore, WrongLastSequence
from mesh.audit._stream import (
    AUDIT_PREFIX,
    AUDIT_STREAM,
    audit_stream_config,
    declare_audit_stream,
    tamper_resistant,
)
from mesh.audit._verify import PROBLEM_KINDS, Problem, Verdict, verify

__all__ = [
    "ALLOWED",
    "ANONYMOUS",
    "AUDIT_PREFIX",
    "AUDIT_STREAM",
    "DECISIONS",
    "EXPORT_FORMAT",
    "FAILED",
    "GENESIS",
    "OUTCOMES",
    "PROBLEM_KINDS",
    "PUBLIC_KEY_FILE",
    "REFUSED",
    "SIGNING_KEY_FILE",
    "STARTED",
    "SUCCEEDED",
    "SURFACES",
    "Actor",
    "AuditError",
    "AuditLog",
    "AuditRecord",
    "AuditStore",
    "Checkpoint",
    "Entry",
    "Export",
    "JetStreamAuditStore",
    "MemoryAuditStore",
    "Problem",
    "Signer",
    "SigningKeyError",
    "Stored",
    "Unreadable",
    "Verdict",
    "WrongLastSequence",
    "anchors_of",
    "audit_stream_config",
    "canonical",
    "declare_audit_stream",
    "decode",
    "digest",
    "ensure_signing_key",
    "entry_line",
    "key_id_of",
    "load_public_key",
    "now_rfc3339",
    "public_key_pem",
    "read_export",
    "record_from_proto",
    "record_to_proto",
    "seal",
    "stored_from_proto",
    "stored_to_proto",
    "tamper_resistant",
    "verify",
    "write_export",
]
