"""Typed payloads from plain JSON fields — for every surface that takes JSON (SDK, CLI, REST, WebSocket)."""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import ParseDict, ParseError

from mesh.errors import InvalidArgument
from mesh.tasks._catalog import KINDS
from mesh.v1 import task_pb2


def payload_from_json(kind: str, fields: Any) -> task_pb2.TaskPayload:
    """The typed payload of `kind` from its JSON fields; bad input names the field."""
    if kind not in KINDS:
        raise InvalidArgument("kind", f"unknown task kind {kind!r} (one of: {', '.join(sorted(KINDS))})")
    if not isinstance(fields, dict):
        raise InvalidArgument("payload", "must be a JSON object")
    try:
        return ParseDict({KINDS[kind].payload_field: fields}, task_pb2.TaskPayload())
    except ParseError as exc:
        raise InvalidArgument("payload", str(exc)) from exc
