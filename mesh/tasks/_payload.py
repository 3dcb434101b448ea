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


def _check_fields(message: Descriptor, fields: dict[str, Any], where: str = "payload") -> None:
    for name, value in fields.items():
        # The proto field names only (protobuf's JSON mapping also takes lowerCamelCase): one spelling per field.
        field = message.fields_by_name.get(name)
        if field is None:
            known = ", ".join(sorted(message.fields_by_name))
            raise InvalidArgument(f"{where}.{name}", f"unknown field (known: {known})")
        if _is_map(field):
            if not isinstance(value, dict):
                raise InvalidArgument(f"{where}.{name}", "must be a JSON object")
            entry = cast(Descriptor, field.message_type).fields_by_name["value"]
            for key, item in value.items():
                _check_value(entry, item, f"{where}.{name}.{key}")
        elif field.is_repeated:
            if not isinstance(value, list):
                raise InvalidArgument(f"{where}.{name}", "must be a JSON array")
            for index, item in enumerate(value):
                _check_value(field, item, f"{where}.{name}[{index}]")
        else:
            _check_value(field, value, f"{where}.{name}")


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and bool(
        cast(Descriptor, field.message_type).GetOptions().map_entry
    )


_SIGNED = {
    FieldDescriptor.TYPE_INT32: 2**31,
    FieldDescriptor.TYPE_SINT32: 2**31,
    FieldDescriptor.TYPE_SFIXED32: 2**31,
    FieldDescriptor.TYPE_INT64: 2**63,
    FieldDescriptor.TYPE_SINT64: 2**63,
    FieldDescriptor.TYPE_SFIXED64: 2**63,
}
_UNSIGNED = {
    FieldDescriptor.TYPE_UINT32: _UINT32_MAX,
    FieldDescriptor.TYPE_FIXED32: _UINT32_MAX,
    FieldDescriptor.TYPE_UINT64: 2**64 - 1,
    FieldDescriptor.TYPE_FIXED64: 2**64 - 1,
}


def _whole(value: Any) -> bool:
    # JSON has one number type: 3.0 is the integer 3 (as JSON Schema's "integer" says), 3.5 is not.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _check_value(field: FieldDescriptor, value: Any, where: str) -> None:
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        if not isinstance(value, dict):
            raise InvalidArgument(where, "must be a JSON object")
        _check_fields(cast(Descriptor, field.message_type), value, where)
    elif kind in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):  # bytes: base64 text
        if not isinstance(value, str):
            raise InvalidArgument(
                where, "must be a string" + (" (base64)" if kind == FieldDescriptor.TYPE_BYTES else "")
            )
    elif kind == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise InvalidArgument(where, "must be true or false")
    elif kind in _UNSIGNED:
        if not _whole(value) or not 0 <= value <= _UNSIGNED[kind]:
            raise InvalidArgument(where, f"must be a whole number from 0 to {_UNSIGNED[kind]}")
    elif kind in _SIGNED:
        bound = _SIGNED[kind]
        if not _whole(value) or not -bound <= value < bound:
            raise InvalidArgument(where, f"must be a whole number from {-bound} to {bound - 1}")
    elif kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidArgument(where, "must be a number")
    else:  # a payload field of another type needs its own rule here (and in the OpenAPI document)
        raise InvalidArgument(where, f"fields of type {field.type} are not accepted from JSON")
