"""What the audit stream holds, message by message: a record, a checkpoint, or something that
is neither (kept, with why, so verification can name it instead of skipping it)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from mesh.audit._checkpoint import Checkpoint
from mesh.audit._errors import Unreadable
from mesh.audit._record import AuditRecord


@dataclass(frozen=True)
class Stored:
    """One message of the audit stream at `stream_sequence`: `item`, or `error` saying why not."""

    stream_sequence: int
    item: AuditRecord | Checkpoint | None
    error: str = ""
    raw: bytes = b""  # the bytes of an unreadable message, as stored

    @property
    def record(self) -> AuditRecord | None:
        return self.item if isinstance(self.item, AuditRecord) else None

    @property
    def checkpoint(self) -> Checkpoint | None:
        return self.item if isinstance(self.item, Checkpoint) else None


def decode(stream_sequence: int, data: bytes) -> Stored:
    """The entry stored as `data`; never raises (an unreadable message is kept with its error)."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise Unreadable("not a JSON object")
        kind = doc.get("type")
        if kind == "record":
            return Stored(stream_sequence, AuditRecord.from_dict(doc))
        if kind == "checkpoint":
            return Stored(stream_sequence, Checkpoint.from_dict(doc))
        raise Unreadable(f"type: {kind!r} is neither 'record' nor 'checkpoint'")
    except (Unreadable, ValueError) as exc:  # ValueError: not JSON, not UTF-8
        return Stored(stream_sequence, None, str(exc), data)


def encode(item: AuditRecord | Checkpoint) -> bytes:
    return item.encode()
