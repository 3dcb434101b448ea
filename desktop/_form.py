"""The submit form, generated from a kind's input message as the web console generates it: ListKinds
names the kind's input type; a built-in kind's message is a case of `TaskPayload` in the generated
descriptors, a user kind's comes from the schema registry. Every field of the message becomes one
control by its proto type, with a label that says the type; what is typed is checked here before
anything is sent, each error tied to its field. No Flet here (`tests/unit/test_desktop_form.py`).

    scalar string           text
    scalar number           text, checked as a whole number in the type's range, or a finite number
    bytes                   text, checked as base64
    bool                    a check box
    enum                    a choice of its value names
    repeated scalar         lines, each checked as its scalar
    message, map, repeated message   JSON, as the REST API takes it
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from mesh.priority import CLASS_NAMES
from mesh.tasks import Limits
from mesh.v1 import kind_pb2, task_pb2

_INTEGER_RANGES: dict[int, tuple[int, int]] = {
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
}
_FLOATS = frozenset({FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE})
_TYPE_NAMES = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in vars(FieldDescriptor).items()
    if name.startswith("TYPE_")
}
_WHOLE = re.compile(r"^-?[0-9]+$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_MAX_KEY = Limits().max_idempotency_key  # as admission checks it


class FormErrors(ValueError):
    """Every field in error at once (field → message), in the form's order."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))  # each message starts with its field's name
        self.errors = errors


@dataclass(frozen=True)
class FieldSpec:
    """One control of the form: which field it fills, how it is typed, and what it says."""

    name: str  # the proto field name (a refusal's tidemesh-field ends with it)
    json_name: str
    type_text: str  # "uint32", "enum Mode", "repeated string", "message acme.v1.Box (JSON)"
    control: str  # text | bool | choice | lines | json
    choices: tuple[str, ...] = ()
    hint: str = ""
    default: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} ({self.type_text})"


@dataclass(frozen=True)
class InputForm:
    """The form of one kind: its input message's fields, and how a filled one becomes a payload."""

    kind: str
    type_name: str
    description: str
    fields: tuple[FieldSpec, ...]
    message_class: type[Message]
    payload_case: str | None  # a built-in kind's TaskPayload case; None for a user kind (custom)

    def field(self, name: str) -> FieldSpec | None:
        return next((spec for spec in self.fields if spec.name == name), None)


def builtin_class(input_type: str) -> tuple[str, type[Message]] | None:
    """The TaskPayload case and generated class of a built-in kind's input type, if it is one."""
    for field in task_pb2.TaskPayload.DESCRIPTOR.fields:
        message = field.message_type
        if message is not None and message.full_name == input_type:
            return field.name, message_factory.GetMessageClass(cast(Descriptor, message))
    return None


def form_for(kind: kind_pb2.KindDeclaration, message_class: type[Message], payload_case: str | None) -> InputForm:
    descriptor = cast(Descriptor, message_class.DESCRIPTOR)  # the stubs type it python-or-upb
    fields = tuple(_field_spec(field) for field in descriptor.fields)
    return InputForm(kind.name, descriptor.full_name, kind.description, fields, message_class, payload_case)


def _field_spec(field: FieldDescriptor) -> FieldSpec:
    is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
    if is_map:
        return FieldSpec(field.name, field.json_name, "map (JSON object)", "json", hint='e.g. {"key": "value"}')
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        message = cast(Descriptor, field.message_type).full_name
        repeated = "repeated " if field.is_repeated else ""
        return FieldSpec(field.name, field.json_name, f"{repeated}message {message} (JSON)", "json", hint="JSON")
    if field.type == FieldDescriptor.TYPE_ENUM:
        names = tuple(value.name for value in field.enum_type.values)  # type: ignore[union-attr]
        enum = field.enum_type.name  # type: ignore[union-attr]
        if field.is_repeated:
            return FieldSpec(
                field.name, field.json_name, f"repeated {enum}", "lines", hint=f"one per line: {', '.join(names)}"
            )
        return FieldSpec(field.name, field.json_name, f"enum {enum}", "choice", names, default=names[0])
    scalar = _TYPE_NAMES[field.type]
    if field.is_repeated:
        return FieldSpec(field.name, field.json_name, f"repeated {scalar}", "lines", hint="one value per line")
    if field.type == FieldDescriptor.TYPE_BOOL:
        return FieldSpec(field.name, field.json_name, scalar, "bool", default="false")
    if field.type in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[field.type]
        return FieldSpec(
            field.name, field.json_name, scalar, "text", hint=f"a whole number, {low} to {high}", default="0"
        )
    if field.type in _FLOATS:
        return FieldSpec(field.name, field.json_name, scalar, "text", hint="a number, e.g. 0.5", default="0")
    if field.type == FieldDescriptor.TYPE_BYTES:
        return FieldSpec(field.name, field.json_name, scalar, "text", hint="base64")
    return FieldSpec(field.name, field.json_name, scalar, "text")


def _scalar(field: FieldDescriptor, text: str) -> Any:
    """One typed value as JSON, or ValueError saying the rule it breaks."""
    if field.type in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[field.type]
        text = text.strip()
        if not _WHOLE.match(text) or not low <= int(text) <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return int(text)
    if field.type in _FLOATS:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ValueError("must be a number, e.g. 0.5")
        return number
    if field.type == FieldDescriptor.TYPE_BYTES:
        try:
            if not _BASE64.match(text) or len(text) % 4:
                raise binascii.Error
            base64.b64decode(text, validate=True)
        except binascii.Error:
            raise ValueError("must be base64") from None
        return text
    if field.type == FieldDescriptor.TYPE_ENUM:
        names = [value.name for value in field.enum_type.values]  # type: ignore[union-attr]
        if text.strip() not in names:
            raise ValueError(f"must be one of {', '.join(names)}")
        return text.strip()
    return text


def read_form(form: InputForm, values: dict[str, Any]) -> Message:
    """The input message from the controls' values (field name → text, or bool for a check box).
    Raises FormErrors naming every field that does not parse."""
    descriptor = cast(Descriptor, form.message_class.DESCRIPTOR)
    document: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for spec in form.fields:
        field = descriptor.fields_by_name[spec.name]
        value = values.get(spec.name, spec.default)
        try:
            if spec.control == "bool":
                document[spec.json_name] = bool(value) if not isinstance(value, str) else value == "true"
            elif spec.control == "json":
                if str(value or "").strip():
                    try:
                        document[spec.json_name] = json.loads(value)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"must be JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
            elif spec.control == "lines":
                lines = [line for line in str(value or "").splitlines() if line.strip()]
                items = []
                for number, line in enumerate(lines, 1):
                    try:
                        items.append(
                            _scalar(field, line if field.type == FieldDescriptor.TYPE_STRING else line.strip())
                        )
                    except ValueError as exc:
                        raise ValueError(f"line {number} {exc}") from None
                document[spec.json_name] = items
            else:
                text = str(value if value is not None else "")
                if text or field.type == FieldDescriptor.TYPE_STRING:
                    document[spec.json_name] = _scalar(field, text)
                elif spec.default:  # a number left empty: zero, as proto3 has it
                    document[spec.json_name] = _scalar(field, spec.default)
        except ValueError as exc:
            errors[spec.name] = f"{spec.name} {exc}"
    if errors:
        raise FormErrors(errors)
    try:
        return json_format.ParseDict(document, form.message_class())
    except json_format.ParseError as exc:  # a JSON field whose content does not fit its message
        name = next((spec.name for spec in form.fields if spec.control == "json" and spec.json_name in str(exc)), "")
        raise FormErrors({name or "input": f"does not fit {form.type_name}: {exc}"}) from exc


def payload_of(form: InputForm, message: Message) -> task_pb2.TaskPayload | Message:
    """What `Client.submit` takes: a built-in kind's TaskPayload case, or a user kind's message
    (the SDK packs it as the payload's custom Any under its type URL)."""
    if form.payload_case is None:
        return message
    payload = task_pb2.TaskPayload()
    getattr(payload, form.payload_case).CopyFrom(message)
    return payload


def check_submit_options(priority: str, idempotency_key: str) -> None:
    """The fields beside the input: the class is a closed choice, the key of a bounded length."""
    errors = {}
    if priority not in CLASS_NAMES:
        errors["priority"] = f"priority: one of {', '.join(CLASS_NAMES)}"
    if len(idempotency_key) > _MAX_KEY:
        errors["idempotency_key"] = f"idempotency_key: at most {_MAX_KEY} characters"
    if errors:
        raise FormErrors(errors)


def field_of_refusal(form: InputForm | None, path: str) -> str:
    """The control a refusal's field path is about (``spec.payload.stream.chunks`` → ``chunks``):
    an input field's name, ``kind``, ``idempotency_key``, or "" for none."""
    if not path:
        return ""
    if path.endswith("kind"):
        return "kind"
    if path.endswith("idempotency_key"):
        return "idempotency_key"
    last = re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1])
    return last if form is not None and form.field(last) is not None else ""
