"""Typed payloads from plain JSON fields — for every surface that takes JSON (SDK, CLI, REST, WebSocket)."""

from __future__ import annotations

from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.json_format import ParseDict, ParseError

from mesh.errors import InvalidArgument
from mesh.tasks._registry import KINDS
from mesh.v1 import task_pb2

_UINT32_MAX = 2**32 - 1


def payload_from_json(kind: str, fields: Any) -> task_pb2.TaskPayload:
    """The typed payload of `kind` from its JSON fields; bad input names the field.

    Stricter than protobuf's JSON mapping, which also takes "5" for a number and camelCase
    names: a JSON surface takes each field by one name, in the one type its OpenAPI schema gives."""
    if kind not in KINDS:
        raise InvalidArgument("kind", f"unknown task kind {kind!r} (one of: {KINDS.one_of()})")
    if not KINDS[kind].builtin:  # its JSON maps through the registered schema (the gateway's codec, the SDK)
        raise InvalidArgument("kind", f"{kind!r} is a user kind: its payload maps through its registered schema")
    if not isinstance(fields, dict):
        raise InvalidArgument("payload", "must be a JSON object")
    case = KINDS[kind].payload_field
    # Every payload case is a message; the stubs type descriptors as python-or-upb, optional.
    _check_fields(cast(Descriptor, task_pb2.TaskPayload.DESCRIPTOR.fields_by_name[case].message_type), fields)
    try:
        return ParseDict({case: fields}, task_pb2.TaskPayload())
    except ParseError as exc:
        raise InvalidArgument("payload", str(exc)) from exc


def _check_fields(message: Descriptor, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        # The proto field names only (protobuf's JSON mapping also takes lowerCamelCase): one spelling per field.
        field = message.fields_by_name.get(name)
        if field is None:
            known = ", ".join(sorted(message.fields_by_name))
            raise InvalidArgument(f"payload.{name}", f"unknown field (known: {known})")
        if field.is_repeated:
            if not isinstance(value, list):
                raise InvalidArgument(f"payload.{name}", "must be a JSON array")
            for index, item in enumerate(value):
                _check_scalar(field, item, f"payload.{name}[{index}]")
        else:
            _check_scalar(field, value, f"payload.{name}")


def _check_scalar(field: FieldDescriptor, value: Any, where: str) -> None:
    if field.type == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise InvalidArgument(where, "must be a string")
    elif field.type == FieldDescriptor.TYPE_UINT32:
        # JSON has one number type: 3.0 is the integer 3 (as JSON Schema's "integer" says), 3.5 is not.
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if not whole or isinstance(value, bool) or not 0 <= value <= _UINT32_MAX:
            raise InvalidArgument(where, f"must be a whole number from 0 to {_UINT32_MAX}")
    else:  # a payload field of another type needs its own rule here (and in the OpenAPI document)
        raise InvalidArgument(where, f"fields of type {field.type} are not accepted from JSON")
