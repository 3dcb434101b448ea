"""Compatibility of a candidate schema with a subject's registered versions.

Only what is reachable from the subject's message is compared: its fields, the messages and enums
they use (nested or imported), recursively, matched by full name. The rules are at least as strict
as ``buf breaking`` with the WIRE_JSON category; where buf accepts a change as wire- and
JSON-compatible (int32 → int64, implicit → optional presence) these rules still refuse it, because a
registered version is a promise about one exact shape. Rule ids are buf's where buf has the rule:

    FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED   a field removed without reserving its number
    FIELD_NO_DELETE_UNLESS_NAME_RESERVED     a field removed without reserving its name (JSON)
    FIELD_SAME_NAME / FIELD_SAME_JSON_NAME   the same number under another name or JSON name
    FIELD_SAME_TYPE                          another scalar type, or another message/enum type name
    FIELD_SAME_CARDINALITY                   repeated ↔ singular, required ↔ not
    FIELD_SAME_PRESENCE                      explicit presence (proto3 ``optional``) ↔ implicit
    FIELD_SAME_ONEOF                         moved into, out of, or between oneofs
    FIELD_SAME_DEFAULT                       another proto2 default
    MESSAGE_SAME_REQUIRED_FIELDS             a required field added or removed
    RESERVED_MESSAGE_NO_DELETE               a reserved number range or name of a message dropped
    ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED / ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED
    ENUM_VALUE_SAME_NAME                     an enum number that lost one of its names
    RESERVED_ENUM_NO_DELETE                  a reserved range or name of an enum dropped
    ENUM_SAME_TYPE                           open ↔ closed enum

Modes (`check`), with *old* the registered version and *new* the candidate:

- BACKWARD — readers of the candidate read data written with the old version: the rules above
  with old → new. Adding a field is fine; removing one needs its number and name reserved.
- FORWARD — readers of the old version read data written with the candidate: the same rules with
  the roles swapped (the candidate in old's place), except that what the swap would call a
  deletion — a field, an enum value or a reservation the candidate *adds* — is allowed: old readers
  skip a field they do not know. Removing a field in the candidate is allowed too (old readers see
  its default), but renaming, retyping or re-cardinalising one is not, nor is removing a required one.
- FULL — both. ``*_TRANSITIVE`` — against every registered version, not just the latest.
- NONE — nothing is checked. UNSPECIFIED is read as BACKWARD.

Every violation is returned, not the first, each naming the version it conflicts with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias, cast

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.descriptor_pb2 import DescriptorProto, EnumDescriptorProto, FileDescriptorSet

from mesh.schemas._descriptors import message_descriptor, pool_of
from mesh.v1 import schema_pb2

__all__ = ["MODE_NAMES", "Violation", "check", "compare", "mode_from_name", "mode_name"]

Mode: TypeAlias = schema_pb2.CompatibilityMode

BACKWARD_MODES = frozenset(
    {
        schema_pb2.COMPATIBILITY_MODE_UNSPECIFIED,
        schema_pb2.COMPATIBILITY_MODE_BACKWARD,
        schema_pb2.COMPATIBILITY_MODE_BACKWARD_TRANSITIVE,
        schema_pb2.COMPATIBILITY_MODE_FULL,
        schema_pb2.COMPATIBILITY_MODE_FULL_TRANSITIVE,
    }
)
FORWARD_MODES = frozenset(
    {
        schema_pb2.COMPATIBILITY_MODE_FORWARD,
        schema_pb2.COMPATIBILITY_MODE_FORWARD_TRANSITIVE,
        schema_pb2.COMPATIBILITY_MODE_FULL,
        schema_pb2.COMPATIBILITY_MODE_FULL_TRANSITIVE,
    }
)
TRANSITIVE_MODES = frozenset(
    {
        schema_pb2.COMPATIBILITY_MODE_BACKWARD_TRANSITIVE,
        schema_pb2.COMPATIBILITY_MODE_FORWARD_TRANSITIVE,
        schema_pb2.COMPATIBILITY_MODE_FULL_TRANSITIVE,
    }
)
# What a swapped (FORWARD) comparison reports for something the candidate adds: allowed.
_ADDITIONS_WHEN_SWAPPED = frozenset(
    {
        "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",
        "FIELD_NO_DELETE_UNLESS_NAME_RESERVED",
        "ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED",
        "ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED",
        "RESERVED_MESSAGE_NO_DELETE",
        "RESERVED_ENUM_NO_DELETE",
    }
)
# backward, forward, full, none, backward-transitive, ... ↔ the enum.
MODE_NAMES: dict[str, Mode] = {
    name.removeprefix("COMPATIBILITY_MODE_").lower().replace("_", "-"): cast(Mode, value)
    for name, value in schema_pb2.CompatibilityMode.items()
    if value != schema_pb2.COMPATIBILITY_MODE_UNSPECIFIED
}


def mode_name(mode: Mode) -> str:
    """``backward-transitive`` for COMPATIBILITY_MODE_BACKWARD_TRANSITIVE; ``unspecified`` for 0."""
    return schema_pb2.CompatibilityMode.Name(mode).removeprefix("COMPATIBILITY_MODE_").lower().replace("_", "-")


def mode_from_name(name: str) -> Mode:
    """The mode a CLI or REST caller spells (``full``, ``FULL_TRANSITIVE``, ``COMPATIBILITY_MODE_NONE``)."""
    from mesh.errors import InvalidArgument

    key = name.strip().lower().removeprefix("compatibility_mode_").replace("_", "-")
    if key not in MODE_NAMES:
        raise InvalidArgument("mode", f"unknown compatibility mode {name!r} (one of: {', '.join(MODE_NAMES)})")
    return MODE_NAMES[key]


@dataclass(frozen=True)
class Violation:
    """One reason a candidate is incompatible with registered version `against_version`."""

    rule: str
    path: str
    message: str
    against_version: int = 0

    def to_proto(self) -> schema_pb2.CompatibilityViolation:
        return schema_pb2.CompatibilityViolation(
            rule=self.rule, path=self.path, message=self.message, against_version=self.against_version
        )

    def __str__(self) -> str:
        against = f" (against version {self.against_version})" if self.against_version else ""
        return f"{self.rule} {self.path}: {self.message}{against}"


# --- one comparison: old → new ------------------------------------------------------------------


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Half-open ranges merged and sorted."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _covered(needle: tuple[int, int], haystack: list[tuple[int, int]]) -> bool:
    return any(start <= needle[0] and needle[1] <= end for start, end in haystack)


def _range_text(start: int, end: int) -> str:
    """A half-open range as a .proto would spell it."""
    return str(start) if end == start + 1 else f"{start} to {end - 1}"


class _Comparison:
    """Compare everything reachable from one message, `old` against `new`; labels name the sides."""

    def __init__(self, old_label: str, new_label: str) -> None:
        self.old_label = old_label
        self.new_label = new_label
        self.found: list[Violation] = []
        self._seen: set[str] = set()

    def _flag(self, rule: str, path: str, message: str) -> None:
        self.found.append(Violation(rule, path, message))

    # messages

    def message(self, old: Descriptor, new: Descriptor) -> None:
        if old.full_name in self._seen:
            return
        self._seen.add(old.full_name)
        old_proto, new_proto = DescriptorProto(), DescriptorProto()
        old.CopyToProto(old_proto)
        new.CopyToProto(new_proto)
        self._reserved_message(old.full_name, old_proto, new_proto)
        new_numbers = _merged((r.start, r.end) for r in new_proto.reserved_range)
        new_names = set(new_proto.reserved_name)
        old_optional = {f.number for f in old_proto.field if f.proto3_optional}
        new_optional = {f.number for f in new_proto.field if f.proto3_optional}
        for old_field in old.fields:
            path = f"{old.full_name}.{old_field.name}"
            new_field = new.fields_by_number.get(old_field.number)
            if new_field is None:
                self._deleted_field(path, old_field, new_numbers, new_names)
                continue
            self._field(path, old_field, new_field, old_field.number in old_optional, new_field.number in new_optional)
        self._required(old, new)

    def _reserved_message(self, name: str, old: DescriptorProto, new: DescriptorProto) -> None:
        kept = _merged((r.start, r.end) for r in new.reserved_range)
        for reserved in old.reserved_range:
            if not _covered((reserved.start, reserved.end), kept):
                self._flag(
                    "RESERVED_MESSAGE_NO_DELETE",
                    name,
                    f"reserved {_range_text(reserved.start, reserved.end)} is reserved in {self.old_label}, "
                    f"not in {self.new_label}",
                )
        for reserved_name in sorted(set(old.reserved_name) - set(new.reserved_name)):
            self._flag(
                "RESERVED_MESSAGE_NO_DELETE",
                name,
                f'reserved name "{reserved_name}" is reserved in {self.old_label}, not in {self.new_label}',
            )

    def _deleted_field(
        self, path: str, field: FieldDescriptor, reserved_numbers: list[tuple[int, int]], reserved_names: set[str]
    ) -> None:
        if not _covered((field.number, field.number + 1), reserved_numbers):
            self._flag(
                "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",
                path,
                f"field {field.number} ({field.name}) of {self.old_label} is gone from {self.new_label} "
                f"without `reserved {field.number};`",
            )
        if field.name not in reserved_names:
            self._flag(
                "FIELD_NO_DELETE_UNLESS_NAME_RESERVED",
                path,
                f"field {field.number} ({field.name}) of {self.old_label} is gone from {self.new_label} "
                f'without `reserved "{field.name}";`',
            )

    def _field(
        self, path: str, old: FieldDescriptor, new: FieldDescriptor, old_optional: bool, new_optional: bool
    ) -> None:
        number = old.number
        if old.name != new.name:
            self._flag(
                "FIELD_SAME_NAME",
                path,
                f"field {number} is {old.name!r} in {self.old_label}, {new.name!r} in {self.new_label}",
            )
        if old.json_name != new.json_name:
            self._flag(
                "FIELD_SAME_JSON_NAME",
                path,
                f"field {number} has JSON name {old.json_name!r} in {self.old_label}, "
                f"{new.json_name!r} in {self.new_label}",
            )
        old_type, new_type = _type_of(old), _type_of(new)
        same_type = old_type == new_type
        if not same_type:
            self._flag(
                "FIELD_SAME_TYPE",
                path,
                f"field {number} is {old_type} in {self.old_label}, {new_type} in {self.new_label}",
            )
        old_oneof, new_oneof = _oneof(old, old_optional), _oneof(new, new_optional)
        if _cardinality(old) != _cardinality(new):
            self._flag(
                "FIELD_SAME_CARDINALITY",
                path,
                f"field {number} is {_cardinality(old)} in {self.old_label}, {_cardinality(new)} in {self.new_label}",
            )
        elif old_oneof == new_oneof and not old.is_repeated and old.has_presence != new.has_presence:
            self._flag(
                "FIELD_SAME_PRESENCE",
                path,
                f"field {number} has {_presence(old)} presence in {self.old_label}, "
                f"{_presence(new)} in {self.new_label}",
            )
        if old_oneof != new_oneof:  # a oneof implies presence: that change is said here, not twice
            self._flag(
                "FIELD_SAME_ONEOF",
                path,
                f"field {number} is {_oneof_text(old_oneof)} in {self.old_label}, "
                f"{_oneof_text(new_oneof)} in {self.new_label}",
            )
        if (old.has_default_value or new.has_default_value) and not old.is_repeated:
            if old.has_default_value != new.has_default_value or old.default_value != new.default_value:
                self._flag(
                    "FIELD_SAME_DEFAULT",
                    path,
                    f"field {number} defaults to {old.default_value!r} in {self.old_label}, "
                    f"{new.default_value!r} in {self.new_label}",
                )
        if not same_type:
            return  # a different type: what lies below is not comparable
        if old.message_type is not None and new.message_type is not None:
            self.message(old.message_type, new.message_type)
        if old.enum_type is not None and new.enum_type is not None:
            self.enum(old.enum_type, new.enum_type)

    def _required(self, old: Descriptor, new: Descriptor) -> None:
        old_required = {f.number: f.name for f in old.fields if f.is_required}
        new_required = {f.number: f.name for f in new.fields if f.is_required}
        for number in sorted(set(old_required) ^ set(new_required)):
            name = old_required.get(number) or new_required[number]
            where = self.old_label if number in old_required else self.new_label
            self._flag(
                "MESSAGE_SAME_REQUIRED_FIELDS",
                f"{old.full_name}.{name}",
                f"required field {number} ({name}) is only in {where}",
            )

    # enums

    def enum(self, old: EnumDescriptor, new: EnumDescriptor) -> None:
        if old.full_name in self._seen:
            return
        self._seen.add(old.full_name)
        old_proto, new_proto = EnumDescriptorProto(), EnumDescriptorProto()
        old.CopyToProto(old_proto)
        new.CopyToProto(new_proto)
        # Enum reserved ranges are inclusive: made half-open to share the range helpers.
        kept = _merged((r.start, r.end + 1) for r in new_proto.reserved_range)
        for reserved in old_proto.reserved_range:
            if not _covered((reserved.start, reserved.end + 1), kept):
                self._flag(
                    "RESERVED_ENUM_NO_DELETE",
                    old.full_name,
                    f"reserved {_range_text(reserved.start, reserved.end + 1)} is reserved in {self.old_label}, "
                    f"not in {self.new_label}",
                )
        for reserved_name in sorted(set(old_proto.reserved_name) - set(new_proto.reserved_name)):
            self._flag(
                "RESERVED_ENUM_NO_DELETE",
                old.full_name,
                f'reserved name "{reserved_name}" is reserved in {self.old_label}, not in {self.new_label}',
            )
        if old.is_closed != new.is_closed:
            self._flag(
                "ENUM_SAME_TYPE",
                old.full_name,
                f"the enum is {_openness(old)} in {self.old_label}, {_openness(new)} in {self.new_label}",
            )
        old_names = _names_by_number(old_proto)
        new_names = _names_by_number(new_proto)
        new_reserved_names = set(new_proto.reserved_name)
        for number, names in sorted(old_names.items()):
            path = f"{old.full_name}.{names[0]}"
            if number not in new_names:
                if not _covered((number, number + 1), kept):
                    self._flag(
                        "ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED",
                        path,
                        f"value {number} ({names[0]}) of {self.old_label} is gone from {self.new_label} "
                        f"without `reserved {number};`",
                    )
                for name in names:
                    if name not in new_reserved_names:
                        self._flag(
                            "ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED",
                            f"{old.full_name}.{name}",
                            f"value {number} ({name}) of {self.old_label} is gone from {self.new_label} "
                            f'without `reserved "{name}";`',
                        )
                continue
            for name in names:
                if name not in new_names[number]:
                    self._flag(
                        "ENUM_VALUE_SAME_NAME",
                        f"{old.full_name}.{name}",
                        f"value {number} is {name!r} in {self.old_label}, "
                        f"{' / '.join(new_names[number])!r} in {self.new_label}",
                    )


def _names_by_number(enum: EnumDescriptorProto) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for value in enum.value:
        out.setdefault(value.number, []).append(value.name)
    return out


def _type_of(field: FieldDescriptor) -> str:
    if field.message_type is not None:
        kind = "map entry" if field.message_type.GetOptions().map_entry else "message"
        if field.type == FieldDescriptor.TYPE_GROUP:
            kind = "group"
        return f"{kind} {field.message_type.full_name}"
    if field.enum_type is not None:
        return f"enum {field.enum_type.full_name}"
    for name, value in vars(FieldDescriptor).items():
        if name.startswith("TYPE_") and value == field.type:
            return name.removeprefix("TYPE_").lower()
    return str(field.type)


def _cardinality(field: FieldDescriptor) -> str:
    if field.is_repeated:
        return "repeated"
    return "required" if field.is_required else "singular"


def _presence(field: FieldDescriptor) -> str:
    return "explicit" if field.has_presence else "implicit"


def _openness(enum: EnumDescriptor) -> str:
    return "closed" if enum.is_closed else "open"


def _oneof(field: FieldDescriptor, proto3_optional: bool) -> str:
    """The real oneof a field belongs to ('' for none; proto3 `optional`'s synthetic oneof is none)."""
    if field.containing_oneof is None or proto3_optional:
        return ""
    return field.containing_oneof.name


def _oneof_text(name: str) -> str:
    return f"in oneof {name!r}" if name else "in no oneof"


def compare(
    old: FileDescriptorSet, new: FileDescriptorSet, subject: str, old_label: str = "old", new_label: str = "new"
) -> list[Violation]:
    """Every rule broken going from `old` to `new`, for what is reachable from `subject`."""
    comparison = _Comparison(old_label, new_label)
    comparison.message(message_descriptor(pool_of(old), subject), message_descriptor(pool_of(new), subject))
    return comparison.found


# --- modes --------------------------------------------------------------------------------------


def _with_version(found: Iterable[Violation], version: int) -> list[Violation]:
    return [Violation(v.rule, v.path, v.message, version) for v in found]


def check(
    previous_versions: Sequence[tuple[int, FileDescriptorSet]],
    candidate: FileDescriptorSet,
    subject: str,
    mode: Mode,
) -> list[Violation]:
    """Every violation of `candidate` against the versions `mode` names (see the module docstring).

    `previous_versions` is (version, descriptor set) of the subject's registered versions, any order."""
    if mode == schema_pb2.COMPATIBILITY_MODE_NONE or not previous_versions:
        return []
    ordered = sorted(previous_versions, key=lambda pair: pair[0])
    against = ordered if mode in TRANSITIVE_MODES else ordered[-1:]
    found: list[Violation] = []
    for version, old in reversed(against):  # the latest first: what a user most likely has to fix
        label = f"version {version}"
        if mode in BACKWARD_MODES:
            found += _with_version(compare(old, candidate, subject, label, "the candidate"), version)
        if mode in FORWARD_MODES:
            swapped = compare(candidate, old, subject, "the candidate", label)
            kept = [v for v in swapped if v.rule not in _ADDITIONS_WHEN_SWAPPED]
            known = {(v.rule, v.path) for v in found if v.against_version == version}
            # FULL: a symmetric rule found both ways is one violation, said once.
            found += [v for v in _with_version(kept, version) if (v.rule, v.path) not in known]
    return found
