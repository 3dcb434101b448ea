"""Mesh messages to JSON with user messages inside: every `google.protobuf.Any` a task carries
(`TaskPayload.custom`, `TaskOutput.custom`) is written as proto3 JSON writes an Any — ``{"@type":
URL, ...its fields}`` — through the message class its type URL resolves to. A type this process
cannot resolve is written as ``{"@type": URL, "value": BASE64}``, never a failed response."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any, cast

from google.protobuf import any_pb2, empty_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError, Message

from mesh.schemas._decode import to_json

_ANY = "google.protobuf.Any"
_PLACEHOLDER = any_pb2.Any()
_PLACEHOLDER.Pack(empty_pb2.Empty())

Path = tuple[str | int, ...]


def anys(message: Message, path: Path = ()) -> Iterator[tuple[Path, any_pb2.Any]]:
    """Every Any set inside `message`, with its path in `MessageToDict`'s output (JSON names)."""
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        at = (*path, field.json_name)
        entry = cast(Descriptor, field.message_type)
        if entry.GetOptions().map_entry:
            value_field = entry.fields_by_name["value"]
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                for key, item in value.items():
                    yield from _visit(item, (*at, str(key)))
            continue
        if field.is_repeated:
            for index, item in enumerate(value):
                yield from _visit(item, (*at, index))
        else:
            yield from _visit(value, at)


def _visit(message: Message, path: Path) -> Iterator[tuple[Path, any_pb2.Any]]:
    if message.DESCRIPTOR.full_name == _ANY:
        yield path, cast(any_pb2.Any, message)
    else:
        yield from anys(message, path)


def type_urls(message: Message) -> set[str]:
    return {found.type_url for _, found in anys(message)}


def to_dict(message: Message, classes: Mapping[str, type[Message]]) -> dict[str, Any]:
    """`MessageToDict(message)` with each Any written through `classes` (type URL → message class)."""
    found = list(anys(message))
    if not found:
        return MessageToDict(message)
    copy = type(message)()
    copy.CopyFrom(message)
    for path, _ in anys(copy):
        _locate(copy, path).CopyFrom(_PLACEHOLDER)
    rendered = MessageToDict(copy)
    for path, value in found:
        _place(rendered, path, _any_json(value, classes.get(value.type_url)))
    return rendered


def _any_json(value: any_pb2.Any, message_class: type[Message] | None) -> dict[str, Any]:
    if message_class is not None:
        try:
            fields: Any = to_json(message_class.FromString(value.value))
        except DecodeError:
            pass
        else:
            # A well-known type with its own JSON form (a wrapper, a Struct) goes under "value", as proto3 says.
            return (
                {"@type": value.type_url, **fields}
                if isinstance(fields, dict)
                else {"@type": value.type_url, "value": fields}
            )
    return {"@type": value.type_url, "value": base64.b64encode(value.value).decode()}


def _locate(message: Message, path: Path) -> Message:
    current: Any = message
    for step in path:
        if isinstance(step, int):
            current = current[step]
        elif isinstance(current, Message):
            field = next(f for f in current.DESCRIPTOR.fields if f.json_name == step)
            current = getattr(current, field.name)
        else:  # a map of messages, keyed by the string form of its key
            current = next(v for k, v in current.items() if str(k) == step)
    return cast(Message, current)


def _place(document: dict[str, Any], path: Path, value: dict[str, Any]) -> None:
    current: Any = document
    for step in path[:-1]:
        current = current[step]
    current[path[-1]] = value
