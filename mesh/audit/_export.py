"""The audit off the mesh: an export file that `verify` checks without the mesh.

JSON Lines. The first line is the header — ``{"format": "tidemesh-audit-export/1", "public_key":
PEM, "key_id", "exported_at"}`` — then one line per stream message in stored order:
``{"stream_sequence": N, "record": {...}}``, ``{"stream_sequence": N, "checkpoint": {...}}`` or
``{"stream_sequence": N, "unreadable": base64, "error": why}``. The records and checkpoints are
exactly their stored form (`AuditRecord.to_dict`, `Checkpoint.to_dict`). An export ends with a
checkpoint of its last record (the gateway signs one first), so a later verification of the live
audit against it (`anchors_of`) shows whether anything was cut off since.

A line of an export that was tampered with still reads: it becomes an unreadable entry, which
verification reports where it sits.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.audit._checkpoint import Checkpoint
from mesh.audit._entries import Stored
from mesh.audit._errors import Unreadable
from mesh.audit._record import AuditRecord

EXPORT_FORMAT = "tidemesh-audit-export/1"


@dataclass(frozen=True)
class Export:
    public_key_pem: str
    key_id: str
    exported_at: str
    entries: tuple[Stored, ...]

    @property
    def checkpoints(self) -> list[Checkpoint]:
        return [entry.checkpoint for entry in self.entries if entry.checkpoint is not None]

    @property
    def records(self) -> list[AuditRecord]:
        return [entry.record for entry in self.entries if entry.record is not None]


def anchors_of(export: Export) -> list[Checkpoint]:
    """The checkpoint an export ends with: what a later audit must still contain (none if it has none)."""
    checkpoints = export.checkpoints
    return [max(checkpoints, key=lambda checkpoint: checkpoint.seq)] if checkpoints else []


def entry_line(entry: Stored) -> dict[str, Any]:
    if entry.record is not None:
        return {"stream_sequence": entry.stream_sequence, "record": entry.record.to_dict()}
    if entry.checkpoint is not None:
        return {"stream_sequence": entry.stream_sequence, "checkpoint": entry.checkpoint.to_dict()}
    return {
        "stream_sequence": entry.stream_sequence,
        "unreadable": base64.b64encode(entry.raw).decode(),
        "error": entry.error,
    }


def export_lines(export: Export) -> Iterable[str]:
    header = {
        "format": EXPORT_FORMAT,
        "public_key": export.public_key_pem,
        "key_id": export.key_id,
        "exported_at": export.exported_at,
    }
    yield json.dumps(header, sort_keys=True, ensure_ascii=False)
    for entry in export.entries:
        yield json.dumps(entry_line(entry), sort_keys=True, ensure_ascii=False)


def write_export(path: Path, export: Export) -> None:
    """Write `export` to `path` (owner-only: it names tenants and credentials), swapped in whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            for line in export_lines(export):
                handle.write(line + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_export(path: Path) -> Export:
    """The export at `path`; `Unreadable` (naming the line) only if its header is not an export's."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise Unreadable(f"{path}: cannot be read ({exc})") from exc
    if not lines:
        raise Unreadable(f"{path}: empty, not an audit export")
    try:
        header = json.loads(lines[0])
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise Unreadable(f"{path} line 1: not a {EXPORT_FORMAT} header")
    for key in ("public_key", "key_id", "exported_at"):
        if not isinstance(header.get(key), str):
            raise Unreadable(f"{path} line 1: {key}: not a string")
    entries = tuple(_entry(line, number) for number, line in enumerate(lines[1:], start=2) if line.strip())
    return Export(header["public_key"], header["key_id"], header["exported_at"], entries)


def _entry(line: str, number: int) -> Stored:
    try:
        doc = json.loads(line)
    except ValueError:
        return Stored(0, None, f"line {number}: not JSON", line.encode())
    if not isinstance(doc, dict):
        return Stored(0, None, f"line {number}: not a JSON object", line.encode())
    where = doc.get("stream_sequence")
    if not isinstance(where, int) or isinstance(where, bool):
        return Stored(0, None, f"line {number}: stream_sequence: not a number", line.encode())
    try:
        if isinstance(doc.get("record"), dict):
            return Stored(where, AuditRecord.from_dict(doc["record"]))
        if isinstance(doc.get("checkpoint"), dict):
            return Stored(where, Checkpoint.from_dict(doc["checkpoint"]))
        raw = base64.b64decode(str(doc.get("unreadable", "")), validate=True)
        return Stored(where, None, str(doc.get("error", "unreadable")), raw)
    except (Unreadable, ValueError) as exc:
        return Stored(where, None, f"line {number}: {exc}", line.encode())
