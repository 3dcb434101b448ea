"""Strict decoding of user payloads: binary and JSON, every problem named by its field path.

Protobuf's parsers are lenient on purpose: a field number the reader does not know — and, less
obviously, a known number sent with the wrong wire type (a string where an int32 belongs) — is kept
aside as an unknown field without any error. A registry that promises "the payload matches the
version it names" cannot accept either, so `decode_strict` parses and then walks the message,
nested messages, repeated and map values included, and refuses the first unknown field it finds
with its path, e.g. ``spec.payload.custom.items[2].size``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from mesh.errors import InvalidArgument

__all__ = ["check_no_unknown_fields", "decode_strict", "from_json", "to_json"]

_WIRE_TYPES = {0: "varint", 1: "64-bit", 2: "length-delimited", 3: "group start", 4: "group end", 5: "32-bit"}
_TYPE_NAMES = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in vars(FieldDescriptor).items()
    if name.startswith("TYPE_") and isinstance(value, int)
}


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _type_name(field: FieldDescriptor) -> str:
    if field.message_type is not None:
        return field.message_type.full_name
    if field.enum_type is not None:
        return field.enum_type.full_name
    return _TYPE_NAMES.get(field.type, str(field.type))


def check_no_unknown_fields(message: Message, path: str) -> None:
    """InvalidArgument naming the first unknown field anywhere in `message` (a wrong wire type included)."""
    descriptor = cast(Descriptor, message.DESCRIPTOR)
    for unknown in cast(Iterable[Any], UnknownFieldSet(message)):
        wire = _WIRE_TYPES.get(unknown.wire_type, str(unknown.wire_type))
        known = descriptor.fields_by_number.get(unknown.field_number)
        if known is not None:
            raise InvalidArgument(
                f"{path}.{known.name}",
                f"sent as wire type {wire}, which a {_type_name(known)} field (number {known.number}) "
                "is not: the payload was written with another schema",
            )
        raise InvalidArgument(
            f"{path}.{unknown.field_number}",
            f"unknown field number {unknown.field_number} ({wire}): {descriptor.full_name} has no such field",
        )
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        where = f"{path}.{field.name}"
        if _is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is not None:
                for key, item in value.items():
                    check_no_unknown_fields(item, f"{where}[{key!r}]")
        elif field.is_repeated:
            for index, item in enumerate(value):
                check_no_unknown_fields(item, f"{where}[{index}]")
        else:
            check_no_unknown_fields(value, where)


def decode_strict(message_class: type[Message], data: bytes, path: str) -> Message:
    """`data` parsed as `message_class`; InvalidArgument at `path` (or below it) if it does not fit exactly."""
    message = message_class()
    try:
        message.ParseFromString(data)
    except (DecodeError, RecursionError) as exc:
        raise InvalidArgument(path, f"not a valid {message.DESCRIPTOR.full_name} ({exc})") from exc
    check_no_unknown_fields(message, path)
    return message


def _field_of(descriptor: Descriptor, key: str) -> FieldDescriptor | None:
    for field in descriptor.fields:
        if key in (field.json_name, field.name):
            return field
    return None


def _check_keys(descriptor: Descriptor, obj: dict[Any, Any], path: str) -> None:
    """Unknown and repeated keys, with their full path — before protobuf's parser, which names neither well."""
    if descriptor.full_name.startswith("google.protobuf."):
        return  # well-known types have their own JSON forms (Timestamp strings, Struct, Any with @type)
    seen: dict[int, str] = {}
    for key, value in obj.items():
        where = f"{path}.{key}"
        field = _field_of(descriptor, key) if isinstance(key, str) else None
        if field is None:
            names = ", ".join(f.name for f in descriptor.fields) or "none"
            raise InvalidArgument(where, f"unknown field of {descriptor.full_name} (its fields: {names})")
        if field.number in seen:
            raise InvalidArgument(where, f"given twice (also as {seen[field.number]!r})")
        seen[field.number] = key
        if field.message_type is None or value is None:
            continue
        if _is_map(field):
            value_type = field.message_type.fields_by_name["value"].message_type
            if value_type is not None and isinstance(value, dict):
                for map_key, item in value.items():
                    if isinstance(item, dict):
                        _check_keys(value_type, item, f"{where}[{map_key!r}]")
        elif field.is_repeated:
            if isinstance(value, list):
                for index, item in enumerate(value):
                    if isinstance(item, dict):
                        _check_keys(field.message_type, item, f"{where}[{index}]")
        elif isinstance(value, dict):
            _check_keys(field.message_type, value, where)


_PLACE = re.compile(r' at "?[A-Za-z_][^ ]*"?\.?$')


def _reason(exc: json_format.ParseError) -> str:
    """json_format's innermost words: it prefixes "Failed to parse <name> field: " at each level."""
    text = str(exc).rsplit(" field: ", 1)[-1]
    return _PLACE.sub("", text).rstrip(".").strip() or str(exc)


def _fails(message_class: type[Message], obj: dict[str, Any]) -> json_format.ParseError | None:
    try:
        json_format.ParseDict(obj, message_class(), descriptor_pool=_pool(message_class()))
    except json_format.ParseError as exc:
        return exc
    return None


def _locate(message_class: type[Message], obj: dict[str, Any], path: str) -> InvalidArgument | None:
    """The deepest field of `obj` that json_format refuses (it names fields, not indices or keys):
    each key is tried alone, then each element or map value of the one that fails. Error path only."""
    from google.protobuf import message_factory

    descriptor = cast(Descriptor, message_class.DESCRIPTOR)
    for key, value in obj.items():
        failure = _fails(message_class, {key: value})
        if failure is None:
            continue
        where = f"{path}.{key}"
        field = _field_of(descriptor, key)
        inner = field.message_type if field is not None else None
        if field is None or inner is None or inner.full_name.startswith("google.protobuf."):
            return InvalidArgument(where, _reason(failure))
        if _is_map(field):
            value_type = inner.fields_by_name["value"].message_type
            if isinstance(value, dict) and value_type is not None:
                value_class = message_factory.GetMessageClass(value_type)
                for map_key, item in value.items():
                    if isinstance(item, dict) and (found := _locate(value_class, item, f"{where}[{map_key!r}]")):
                        return found
            return InvalidArgument(where, _reason(failure))
        item_class = message_factory.GetMessageClass(inner)
        if field.is_repeated and isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict) and (found := _locate(item_class, item, f"{where}[{index}]")):
                    return found
                if not isinstance(item, dict):
                    return InvalidArgument(f"{where}[{index}]", f"must be a JSON object ({inner.full_name})")
        elif not field.is_repeated and not isinstance(value, dict):
            return InvalidArgument(where, f"must be a JSON object ({inner.full_name})")
        elif isinstance(value, dict) and (found := _locate(item_class, value, where)):
            return found
        return InvalidArgument(where, _reason(failure))
    return None


def from_json(message_class: type[Message], obj: Any, path: str) -> Message:
    """`obj` (parsed JSON) as `message_class`, strictly: unknown keys and wrong types name their field."""
    if not isinstance(obj, dict):
        raise InvalidArgument(path, f"must be a JSON object ({message_class.DESCRIPTOR.full_name})")
    _check_keys(cast(Descriptor, message_class.DESCRIPTOR), obj, path)
    message = message_class()
    try:
        json_format.ParseDict(obj, message, descriptor_pool=_pool(message))
    except json_format.ParseError as exc:
        raise (_locate(message_class, obj, path) or InvalidArgument(path, _reason(exc))) from exc
    except RecursionError as exc:
        raise InvalidArgument(path, "nested too deeply") from exc
    return message


def to_json(message: Message) -> dict[str, Any]:
    """`message` as JSON-ready data with proto field names, fields at their default included."""
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        descriptor_pool=_pool(message),
    )


def _pool(message: Message) -> DescriptorPool:
    """The pool `message`'s type lives in (a registry class's private one), for Any fields inside it."""
    return cast(DescriptorPool, message.DESCRIPTOR.file.pool)
